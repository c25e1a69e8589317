"""
Training: the config, and one hand-written loop for every stage of IPT and its baselines
(what each stage trains, its loss and what it saves: stages.py).

A run trains a set of tasks at once. Every batch row carries its task's index; each step takes
--batch-size rows from every task still training, and the loss is the sum of the tasks' own mean
losses (MSF: their mean, plus α · reconstruction). In pt and ist each task owns its tensors,
Adam is elementwise and clipping is per task, so a task's run is what it would be alone.
Per task: dev scored by generation every --eval-every steps, the best-dev state kept, test scored
at it. Outputs go to runs/<run>/<stage dir>/ (config.json, metrics.jsonl, results.tsv,
checkpoint.safetensors); re-running the same command resumes it.

    python train.py --stage ist --task glue-sst2
"""
import argparse
import functools
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace

import torch
from tqdm import tqdm

import checkpoint
import data
import distributed
import plm
import stages
import trainstep
from data import UserError


def opt(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    stage: str = opt("pt", "pt | msf | ist | reconstruct | ft | did | untuned | mpt (see stages.py)")
    run: str = opt("runs/default", "run folder: one split and one model; stages write sub-folders")
    model: str = opt("google/t5-base-lm-adapt", "HF T5 name or path (Lester et al. prompt-tune the LM-adapted T5)")
    tokenizer: str = opt("", "tokenizer name or path; empty: the model's")
    data_dir: str = opt("../shared/data/crossfit", "folder in CrossFit's layout")
    tasks_file: str = opt(str(data.HERE / "tasks.txt"), "task table: name, metric, type")
    split: str = opt("random", "a name in splits/ or a split file")
    tasks_from: str = opt("", "comma-separated sections of the split to train; empty: the stage's "
                              "(pt, ft, did, untuned: all; msf, ist: train; reconstruct: all but train)")
    task: str = opt("", "train this one task only (overrides --tasks-from)")
    allow_missing: bool = opt(False, "train on the tasks present when some lack data (listed in results)")
    k: int = opt(16, "the k of <task>_<k>_<seed>_<split>.tsv")
    data_seed: int = opt(100, "which of CrossFit's samples (100, 13, 21, 42, 87); the authors' PT and MSF use 100")
    seed: int = opt(stages.DEFAULT_SEED, "initialisation and batch-order seed (the authors' 42); another seed "
                                         "writes to its own stage folders (…-seed<N>)")
    prompt_len: int = opt(100, "P, soft prompt length (the authors' n and Lester's default)")
    prompt_init: str = opt("normal", "normal: N(0, 0.02²) as the authors | vocab: sampled vocabulary | "
                                     "labels: class labels, then vocabulary (Lester)")
    intrinsic_dim: int = opt(5, "d_I; the paper's headline numbers are at 5")
    ae_hidden: int = opt(0, "d'_I, Proj_b's hidden size; 0: d_model (the authors' 768 for BART-base)")
    alpha: float = opt(1.0, "α of Eq. MSF for our mean-reduced losses (≈ the authors' 200 on token sums)")
    subspace: str = opt("msf", "ist only: msf (the trained Proj_b) | random (untrained, the baseline) | pca (the "
                               "training tasks' PT prompts' mean and top principal directions: linear.py) | mpt "
                               "(P* ⊙ u vᵀ from the mpt stage, P + H numbers a task; --intrinsic-dim unused: mpt.py)")
    msf_seed: int = opt(stages.DEFAULT_SEED, "ist, reconstruct: the MSF run whose Proj_b they use, by its --seed "
                                             "(another draw of the subspace; writes …-msf<N> folders)")
    z_init: str = opt("normal", "ist only: normal (authors') | zeros | mean (of Proj(P_train))")
    init_from_ist: str = opt("", "pt only: an IST stage folder; start each prompt at Proj_b(z_best)")
    init_from_peft: str = opt("", "pt only: PEFT prompt-tuning adapters, <dir>/<task>/ (or one adapter with "
                                  "--task); start each prompt there")
    transfer: str = opt("", "pt only, SPoT (transfer.py): start each prompt at the split's training tasks' mean PT "
                            "prompt (mean) or at its nearest training task's (nearest: by --similar-by's z)")
    similar_by: str = opt("", "with --transfer nearest: an IST stage folder (MSF subspace); each task's z there "
                              "against the training tasks' Proj(P) picks its nearest")
    transfer_from: str = opt("", "with --transfer: the folder of the training tasks' PT prompts it starts from; "
                                 "empty: --prompt-store's (where this PT run then writes its own)")
    prompt_store: str = opt("", "folder of PT prompts that pt writes and msf, reconstruct read; "
                                "empty: <run>/prompts-s<data-seed>[-seed<seed>]")
    steps: int = opt(2000, "step budget per task (the authors' 100k is ~50 epochs a minute on K-shot data)")
    batch_size: int = opt(8, "rows per task per step (largest of the authors' grid 2/4/8)")
    lr: float = opt(0.0, "peak learning rate; 0: the stage's default (see STAGE_LR)")
    optimizer: str = opt("adamw", "adamw | adafactor (Lester et al.'s: lr 0.3, no relative step, no parameter scaling)")
    warmup: float = opt(0.06, "fraction of steps of linear warm-up, then linear decay (the authors' schedule)")
    clip: float = opt(1.0, "gradient-norm clip, per task where tasks own their tensors; 0: none")
    label_smoothing: float = opt(0.0, "the authors used 0.1")
    eval_every: int = opt(100, "steps between dev evaluations (and checkpoints)")
    patience: int = opt(0, "stop a task after this many evaluations without a better dev score; 0: never")
    max_input_len: int = opt(412, "input tokens kept, </s> included (the authors' 512 minus 100 prompt rows)")
    max_target_len: int = opt(64, "target tokens kept, and the generation limit (the authors' 64)")
    eval: str = opt("generate", "generate: decode answers (CrossFit's) | rank: cls tasks pick the most likely "
                                "class (rank classification: no decoding), the others still generate | both: select "
                                "and score by generation, and score the test sets by rank too (results.tsv's test_rank)")
    num_beams: int = opt(1, "beams for dev/test generation (the authors' 4; greedy is ~4x cheaper)")
    decoder: str = opt("own", "greedy generation by decode.py's cached loop (own: HF generate's tokens, fewer kernel "
                              "launches and waits) or HF generate (hf); beams always use HF generate")
    eval_batch_size: int = opt(64, "rows per generation batch")
    max_test: int = opt(0, "score at most this many test examples per task (first ones); 0: all")
    keep_checkpoints: bool = opt(False, "keep checkpoint.safetensors (and .prev) once results.tsv is written; by "
                                        "default deleted then: a finished fine-tuning of T5-base would keep ~8 GB a task")
    tokens_per_forward: int = opt(0, "forward a step's rows in length-sorted passes of at most this many padded x+y "
                                     "tokens (same gradient, less padding and memory); 0: one pass")
    task_tag: bool = opt(False, "prepend ' [task] ' to inputs as the authors did (leaks task identity)")
    device: str = opt("", "cpu | cuda | cuda:N; empty: cuda when present")
    precision: str = opt("auto", "auto: bf16 autocast on CUDA, fp32 on a CPU | bf16: autocast on any device "
                                 "(CPUs with AMX gain) | fp32")

    def __post_init__(self):
        """Every option is checked here, before any file or model is read; each message names
        the flag and what it accepts."""
        flag = lambda name: "--" + name.replace("_", "-")
        choices = {"stage": tuple(STAGE_LR), "optimizer": ("adamw", "adafactor"), "eval": ("generate", "rank", "both"), "precision": ("auto", "bf16", "fp32"), "subspace": ("msf", "random", "pca", "mpt"), "prompt_init": ("normal", "vocab", "labels"),
                   "z_init": ("normal", "zeros", "mean"), "transfer": ("", "mean", "nearest"),
                   "decoder": ("own", "hf")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(f"unknown {flag(name)} {getattr(self, name)!r}: choose {', '.join(allowed)}")
        at_least = {"k": 1, "steps": 1, "batch_size": 1, "eval_every": 1, "prompt_len": 1, "intrinsic_dim": 1,
                    "max_input_len": 1, "max_target_len": 1, "num_beams": 1, "eval_batch_size": 1,
                    "ae_hidden": 0, "patience": 0, "max_test": 0, "tokens_per_forward": 0, "seed": 0, "msf_seed": 0,
                    "data_seed": 0, "lr": 0, "alpha": 0, "clip": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= low):
                raise UserError(f"{flag(name)} must be a number ≥ {low}, got {value}")
        for name in ("warmup", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"{flag(name)} must be in [0, 1), got {getattr(self, name)}")
        if self.stage == "reconstruct" and self.subspace != "msf":
            raise UserError(f"--stage reconstruct applies the MSF autoencoder; --subspace {self.subspace} has none")
        if self.msf_seed != stages.DEFAULT_SEED and (self.stage not in ("ist", "reconstruct") or self.subspace != "msf"):
            raise UserError("--msf-seed chooses the MSF subspace that --stage ist and reconstruct use")
        if (self.init_from_ist or self.init_from_peft) and self.stage != "pt":
            raise UserError("--init-from-ist and --init-from-peft belong to --stage pt (they start prompt tuning)")
        if sum(map(bool, (self.init_from_ist, self.init_from_peft, self.transfer))) > 1:
            raise UserError("give one of --init-from-ist, --init-from-peft and --transfer")
        if self.transfer_from and not self.transfer:
            raise UserError("--transfer-from says where --transfer reads its prompts: give --transfer too")
        if self.transfer and self.stage != "pt":
            raise UserError("--transfer belongs to --stage pt (it starts prompt tuning)")
        if bool(self.similar_by) != (self.transfer == "nearest"):
            raise UserError("--transfer nearest needs --similar-by (an IST stage folder), and --similar-by needs it")


# Adam step sizes: Lester et al. tune prompts at 0.3; full fine-tuning uses the usual T5 rate.
# msf and ist were measured on the offline world (unseen-task E_rel at d_I = d*): MSF at 1e-3 for
# 400 steps / 3e-3 for 200 / 1e-2 for 200 gave 0.89 / 0.89 / 0.80 (faster fits the seen tasks'
# prompts too closely); IST at 0.03 / 0.1 / 0.3 gave 0.77 / 0.90 / 0.89. DID (one world task, d = 3,
# 150 steps): train loss 1.72 -> 1.70 / 1.49 / 1.52 at 0.01 / 0.1 / 1, diverging at 10.
STAGE_LR = {"pt": 0.3, "msf": 3e-3, "ist": 0.1, "reconstruct": 0.0, "ft": 1e-4, "did": 0.1, "untuned": 0.0,
            "mpt": 0.3}                                        # MPT's P*, u, v: prompts, at PT's rate

# Settings that change how a run computes, not what it computes: a resumed run may change them.
OPERATIONAL = {"device", "decoder", "eval_batch_size", "tokens_per_forward", "allow_missing", "keep_checkpoints"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        helptext = f"{f.metadata['help']} (default: {f.default!r})"
        if isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=helptext)
        else:
            p.add_argument(flag, type=type(f.default), default=f.default, help=helptext)
    return Config(**vars(p.parse_args(argv)))


# -----------------------------------------------------------------------------
# Which tasks

def select_tasks(cfg, tasks):
    if cfg.task:
        if cfg.task not in tasks:
            raise data.unknown_task(cfg.task, tasks)
        return [cfg.task]
    sections = data.load_split(cfg.split, tasks)
    default = {"pt": list(sections), "ft": list(sections), "did": list(sections), "untuned": list(sections),
               "reconstruct": [s for s in sections if s != "train"]}
    wanted = cfg.tasks_from.split(",") if cfg.tasks_from else default.get(cfg.stage, ["train"])
    unknown = [s for s in wanted if s not in sections]
    if unknown:
        raise UserError(f"split {cfg.split!r} has no section {unknown}; it has {list(sections)}")
    return list(dict.fromkeys(t for s in wanted for t in sections[s]))


# -----------------------------------------------------------------------------
# The loop, written once

def train(cfg, model, tokenizer, stage, prepared, out, device, note=""):
    names = [p["name"] for p in prepared]
    params = dict(stage.module.named_parameters())
    trainable = [p for p in params.values() if p.requires_grad]
    groups = [{"tasks": tasks, "params": pnames, "best": -math.inf, "best_step": 0, "bad_evals": 0,
               "done": False, "steps": 0} for tasks, pnames in stage.groups]
    if not trainable:                                        # reconstruct, untuned: scored as they are
        dev = plm.score_tasks(cfg, model, tokenizer, stage.prompts, prepared, range(len(names)), "dev")
        for g in groups:
            g["best"] = sum(dev[k] for k in g["tasks"]) / len(g["tasks"])
        return finish(cfg, model, tokenizer, stage, prepared, groups, {}, out, note)
    optimizer = trainstep.make_optimizer(cfg, trainable)
    best = {n: params[n].detach().clone() for g in groups for n in g["params"]}
    step = 0
    ckpt = out / "checkpoint.safetensors"
    if ckpt.is_file():                                       # resume where the last evaluation left off
        prev = checkpoint.previous(ckpt)
        tensors, meta = checkpoint.load(ckpt, "delete it to restart this stage from scratch" + (
            f", or move {prev.name} (the evaluation before) in its place to resume from there" if prev.is_file() else ""))
        checkpoint.fit(stage.module, {n[6:]: t for n, t in tensors.items() if n.startswith("param.")}, ckpt)
        best.update({n[5:]: t for n, t in tensors.items() if n.startswith("best.")})
        checkpoint.restore_optimizer(optimizer, tensors)
        step, groups = meta["loop"]["step"], meta["loop"]["groups"]
        tqdm.write(f"resuming {out} at step {step}")
    trim_log(out / "metrics.jsonl", step)                   # drop records no checkpoint covers
    log = (out / "metrics.jsonl").open("a") if distributed.is_main() else open(os.devnull, "w")
    autocast = trainstep.autocast(cfg, device)
    if stage.score_start and step == 0:                     # a given start (stage two): where the run begins
        with autocast:
            dev = plm.score_tasks(cfg, model, tokenizer, stage.prompts, prepared, range(len(names)), "dev")
        select(cfg, groups, dev, params, best, step)
        log.write(json.dumps({"step": 0, "dev": {names[k]: v for k, v in dev.items()}, "active": len(names)}) + "\n")
        tqdm.write(f"step 0 (the given start) | dev {sum(dev.values()) / len(dev):.3f} over {len(dev)} tasks")

    batcher = data.TaskBatcher([p["train"] for p in prepared], cfg.batch_size, cfg.seed)
    n_train = sum(p.numel() for p in trainable)
    n_all = n_train + (0 if stage.module is model else sum(p.numel() for p in model.parameters()))
    tqdm.write(f"{cfg.stage}: {len(names)} tasks | trainable: {n_train:,} || all: {n_all:,} "
               f"({100 * n_train / n_all:.4f}%) | lr {cfg.lr}")
    bar = tqdm(total=cfg.steps, initial=step, desc=f"{cfg.stage} {out.name}", dynamic_ncols=True, disable=None)
    losses, started = [], time.time()
    while step < cfg.steps and not all(g["done"] for g in groups):
        active = [k for g in groups if not g["done"] for k in g["tasks"]]
        batch = batcher.batch(step, active, names, tokenizer.pad_token_id).to(device)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * trainstep.lr_at(cfg, step)
        if stage.module is model:
            model.train()
        loss = trainstep.forward_backward_in_memory(cfg, model, stage, batch, len(names), autocast)
        if not math.isfinite(loss):
            raise UserError(f"loss is {loss} at step {step} (tasks {', '.join(names[k] for k in active[:5])}…). "
                            f"{'The checkpoint ' + str(ckpt) + ' holds the last evaluation.' if ckpt.is_file() else ''}"
                            f" Lower --lr (now {cfg.lr}) or check these tasks' data, then re-run.")
        if cfg.clip:                                         # clip per group: tasks stay independent
            trainstep.clip_per_group([[params[n] for n in g["params"]] for g in groups if not g["done"]], cfg.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        for g in groups:
            g["steps"] += not g["done"]
        losses.append(loss)
        bar.update()
        bar.set_postfix(loss=f"{loss:.4f}", tasks=len(active))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            with autocast:
                dev = plm.score_tasks(cfg, model, tokenizer, stage.prompts, prepared, active, "dev")
            improved = select(cfg, groups, dev, params, best, step)
            record = {"step": step, "loss": sum(losses) / len(losses), "s_per_step": (time.time() - started) / len(losses),
                      "dev": {names[k]: v for k, v in dev.items()}, "active": len(active)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            checkpoint.save(ckpt, {**{f"param.{n}": p for n, p in params.items() if p.requires_grad},
                                   **{f"best.{n}": t for n, t in best.items()},
                                   **checkpoint.optimizer_tensors(optimizer)},
                            keep_previous=True, loop={"step": step, "groups": groups}, config=asdict(cfg))
            tqdm.write(f"step {step} | loss {record['loss']:.4f} | dev {sum(dev.values()) / len(dev):.3f} "
                       f"over {len(dev)} tasks | improved {improved} | {1000 * record['s_per_step']:.0f} ms/step")
            losses, started = [], time.time()
    bar.close()
    log.close()
    finish(cfg, model, tokenizer, stage, prepared, groups, best, out, note)


def trim_log(path, step):
    """Keep the metrics records up to `step` (those a checkpoint covers); none on a fresh start."""
    if path.is_file() and distributed.is_main():
        kept = [r for r in path.read_text().splitlines() if step and r.strip() and json.loads(r)["step"] <= step]
        path.write_text("".join(r + "\n" for r in kept))


def select(cfg, groups, dev, params, best, step):
    """Keep each group's best-dev tensors; stop a group on patience or budget. -> groups improved."""
    improved = 0
    for g in groups:
        if g["done"]:
            continue
        value = sum(dev[k] for k in g["tasks"]) / len(g["tasks"])     # MSF: mean over its tasks
        if value > g["best"]:
            g.update(best=value, best_step=step, bad_evals=0)
            for n in g["params"]:
                best[n] = params[n].detach().clone()
            improved += 1
        else:
            g["bad_evals"] += 1
        g["done"] = step >= cfg.steps or bool(cfg.patience and g["bad_evals"] >= cfg.patience)
    return improved


def finish(cfg, model, tokenizer, stage, prepared, groups, best, out, note):
    """Load every group's best-dev state, score the test sets, write the artifact and results.tsv
    (last: its presence marks the stage finished)."""
    checkpoint.fit(stage.module, best, "best state")
    state = {n: p.detach().clone() for n, p in stage.module.named_parameters()}
    with trainstep.autocast(cfg, model.device):
        test = plm.score_tasks(cfg, model, tokenizer, stage.prompts, prepared, range(len(prepared)), "test")
        ranked = dict(test)                          # --eval both: cls tasks again, by rank classification
        cls = [k for k, p in enumerate(prepared) if p["options"]] if cfg.eval == "both" else []
        if cls:
            ranked.update(plm.score_tasks(replace(cfg, eval="rank"), model, tokenizer, stage.prompts, prepared, cls, "test"))
    dev_best = {k: g["best"] for g in groups for k in g["tasks"]}
    both = cfg.eval == "both"
    lines = ["task\tmetric\tdev\ttest\tsteps\tbest_step" + "\ttest_rank" * both]
    for g in groups:
        for k in g["tasks"]:
            p = prepared[k]
            lines.append(f"{p['name']}\t{p['metric']}\t{dev_best[k]:.4f}\t{test[k]:.4f}\t{g['steps']}\t{g['best_step']}"
                         + f"\t{ranked[k]:.4f}" * both)
    if stage.artifact:
        stage.artifact(out, state)
    checkpoint.write_text(out / "results.tsv", "\n".join(lines + [note] * bool(note)) + "\n")
    if not cfg.keep_checkpoints and distributed.is_main():  # what later stages read is in the artifact
        for path in (out / "checkpoint.safetensors", checkpoint.previous(out / "checkpoint.safetensors")):
            path.unlink(missing_ok=True)
    tqdm.write(f"results: {out / 'results.tsv'} (test mean {sum(test.values()) / len(test):.3f})")


# -----------------------------------------------------------------------------
# A run: every check that needs no model first, then the model, then the loop

def planned_tasks(cfg, tasks):
    """The tasks this stage trains: its selection, less those without data (only under
    --allow-missing; else an error naming them). -> (names, missing)"""
    data.require_data_dir(cfg.data_dir, cfg.k)
    names = select_tasks(cfg, tasks)
    missing = data.missing_tasks(cfg.data_dir, names, cfg.k, cfg.data_seed)
    if missing and not cfg.allow_missing:
        raise UserError(f"{len(missing)} of {len(names)} tasks have no data in {cfg.data_dir} "
                        f"(k={cfg.k}, seed {cfg.data_seed}): {', '.join(missing)}\n"
                        f"Add their files, or pass --allow-missing to train the other {len(names) - len(missing)}.")
    names = [n for n in names if n not in missing]
    if not names:
        raise UserError("no task to train")
    return names, missing


def run(cfg):
    device = distributed.setup(plm.resolve_device(cfg.device))
    tasks = data.load_tasks(cfg.tasks_file)
    names, missing = planned_tasks(cfg, tasks)
    cfg.lr = cfg.lr or STAGE_LR[cfg.stage]
    out = stages.stage_dir(cfg)
    fingerprints = {n: data.fingerprint(cfg.data_dir, n, cfg.k, cfg.data_seed) for n in names}   # and parsed
    note = f"# missing (no data, not trained): {', '.join(missing)}" if missing else ""
    # ft and did change the PLM: a fresh one per task; every other stage trains its tasks in one loop
    jobs = [(out / n, [n]) for n in names] if cfg.stage in stages.PER_TASK else [(out, names)]
    with checkpoint.Lock(out):
        jobs = [(job_out, job_names) for job_out, job_names in jobs if not finished(cfg, job_out, job_names, fingerprints)]
        if not jobs:
            return out
        config = functools.cache(lambda: plm.model_config(cfg))            # read once, only when needed
        inputs = stages.read_inputs(cfg, names, lambda: config().hidden_size)
        model, tokenizer = plm.load(cfg, device, config())
        if cfg.stage not in stages.PER_TASK and trainstep.bf16(cfg, device):   # frozen throughout: bf16 weights
            plm.weights_in(model, torch.bfloat16)
        causal = not model.config.is_encoder_decoder
        prepared = {p["name"]: p for p in data.prepare(cfg, names, tasks, tokenizer, causal)}
        for i, (job_out, job_names) in enumerate(jobs):
            if i and cfg.stage in stages.PER_TASK:             # the last task changed it: a fresh copy
                model, tokenizer = plm.load(cfg, device, config())
            job_out.mkdir(parents=True, exist_ok=True)
            checkpoint.write_text(job_out / "config.json", json.dumps(
                {**asdict(cfg), "tasks": job_names, "missing": missing,
                 "data": {n: fingerprints[n] for n in job_names}}, indent=1))
            stage = stages.SETUPS[cfg.stage](cfg, model, tokenizer, job_names, [prepared[n] for n in job_names], **inputs)
            stage.module.to(device)
            train(cfg, model, tokenizer, stage, [prepared[n] for n in job_names], job_out, device, note)
    return out


def finished(cfg, out, names, fingerprints):
    """True if `out` holds this run's results; raises if it holds another run, or this run on
    data that has changed since (resuming would mix the two)."""
    saved = out / "config.json"
    if not saved.is_file():
        return False
    try:
        before = json.loads(saved.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{saved} is damaged; delete {out} to start that stage again") from None
    changed = [n for n in names if before.get("data", {}).get(n) != fingerprints[n]]
    if before.get("tasks") == names and changed:
        raise UserError(f"the data of {', '.join(changed)} in {cfg.data_dir} changed since {out} was started; "
                        f"delete {out} to train on the new data, or put the old files back to resume")
    now, default = asdict(cfg), {f.name: f.default for f in fields(Config)}
    # an option added since that run was made: it ran with the option's default
    if before.get("tasks") != names or any(before.get(k, default[k]) != v for k, v in now.items() if k not in OPERATIONAL):
        raise UserError(f"{out} holds a run with other settings (see its config.json); "
                        "use another --run or delete that folder")
    if (out / "results.tsv").is_file():
        tqdm.write(f"{out} is finished (results.tsv); skipping")
        return True
    return False


def main(argv=None):
    try:
        cfg = parse_args(argv)
        run(cfg)
    except (UserError, checkpoint.CheckpointError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted: the last checkpoint holds every finished evaluation; re-run the same command to resume")
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()
