"""
Training: one hand-written loop for every stage of IPT and its baselines.

  pt    §3.1  a soft prompt per task; the T5 frozen                  -> prompts-s<seed>/<task>.safetensors
  msf   §3.2  the autoencoder only, over the training tasks' PT prompts -> autoencoder.safetensors
  ist   §3.2  z only (d_I numbers a task); Proj_b and the T5 frozen   -> z.safetensors
        --subspace random: the same with an untrained Proj_b (the paper's random-subspace baseline)
  ft          full fine-tuning, the baseline of E_rel^FT (one task at a time: each needs its own T5)
  pt --init-from-ist DIR   §4.3 stage two: PT started from Proj_b(z) of an IST run

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
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from tqdm import tqdm

import checkpoint
import data
import evaluate
import ipt


def opt(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    stage: str = opt("pt", "pt | msf | ist | ft")
    run: str = opt("runs/default", "run folder: one split and one model; stages write sub-folders")
    model: str = opt("google/t5-base-lm-adapt", "HF T5 name or path (Lester et al. prompt-tune the LM-adapted T5)")
    tokenizer: str = opt("", "tokenizer name or path; empty: the model's")
    data_dir: str = opt("../shared/data/crossfit", "folder in CrossFit's layout")
    tasks_file: str = opt(str(data.HERE / "tasks.txt"), "task table: name, metric, type")
    split: str = opt("random", "a name in splits/ or a split file")
    tasks_from: str = opt("", "comma-separated sections of the split to train; empty: the stage's "
                              "(pt, ft: all; msf, ist: train)")
    task: str = opt("", "train this one task only (overrides --tasks-from)")
    allow_missing: bool = opt(False, "train on the tasks present when some lack data (listed in results)")
    k: int = opt(16, "the k of <task>_<k>_<seed>_<split>.tsv")
    data_seed: int = opt(100, "which of CrossFit's samples (100, 13, 21, 42, 87); the authors' PT and MSF use 100")
    seed: int = opt(42, "initialisation seed (the authors' default)")
    prompt_len: int = opt(100, "P, soft prompt length (the authors' n and Lester's default)")
    prompt_init: str = opt("normal", "normal: N(0, 0.02²) as the authors | vocab: sampled vocabulary | "
                                     "labels: class labels, then vocabulary (Lester)")
    intrinsic_dim: int = opt(5, "d_I; the paper's headline numbers are at 5")
    ae_hidden: int = opt(0, "d'_I, Proj_b's hidden size; 0: d_model (the authors' 768 for BART-base)")
    alpha: float = opt(1.0, "α of Eq. MSF for our mean-reduced losses (≈ the authors' 200 on token sums)")
    subspace: str = opt("msf", "ist only: msf (the trained Proj_b) | random (untrained, the baseline)")
    z_init: str = opt("normal", "ist only: normal (authors') | zeros | mean (of Proj(P_train))")
    init_from_ist: str = opt("", "pt only: an IST stage folder; start each prompt at Proj_b(z_best)")
    steps: int = opt(2000, "step budget per task (the authors' 100k is ~50 epochs a minute on K-shot data)")
    batch_size: int = opt(8, "rows per task per step (largest of the authors' grid 2/4/8)")
    lr: float = opt(0.0, "peak learning rate; 0: the stage's default (see STAGE_LR)")
    warmup: float = opt(0.06, "fraction of steps of linear warm-up, then linear decay (the authors' schedule)")
    clip: float = opt(1.0, "gradient-norm clip, per task where tasks own their tensors")
    label_smoothing: float = opt(0.0, "the authors used 0.1")
    eval_every: int = opt(100, "steps between dev evaluations (and checkpoints)")
    patience: int = opt(0, "stop a task after this many evaluations without a better dev score; 0: never")
    max_input_len: int = opt(412, "input tokens kept, </s> included (the authors' 512 minus 100 prompt rows)")
    max_target_len: int = opt(64, "target tokens kept, and the generation limit (the authors' 64)")
    num_beams: int = opt(1, "beams for dev/test generation (the authors' 4; greedy is ~4x cheaper)")
    eval_batch_size: int = opt(64, "rows per generation batch")
    max_test: int = opt(0, "score at most this many test examples per task (first ones); 0: all")
    rows_per_forward: int = opt(0, "split a step's rows into forward passes of this size (same gradient); 0: one pass")
    task_tag: bool = opt(False, "prepend ' [task] ' to inputs as the authors did (leaks task identity)")
    device: str = opt("", "cpu | cuda; empty: cuda when present (with bf16 autocast)")

    def __post_init__(self):
        checks = [(self.stage in STAGE_LR, f"unknown --stage {self.stage!r}: choose {', '.join(STAGE_LR)}"),
                  (self.subspace in ("msf", "random"), "--subspace is msf or random"),
                  (self.prompt_init in ("normal", "vocab", "labels"), "--prompt-init is normal, vocab or labels"),
                  (self.steps > 0 and self.eval_every > 0 and self.batch_size > 0, "steps, eval-every, batch-size > 0"),
                  (not self.init_from_ist or self.stage == "pt", "--init-from-ist belongs to --stage pt")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


# Adam step sizes: Lester et al. tune prompts at 0.3; full fine-tuning uses the usual T5 rate.
# msf and ist were measured on the offline world (unseen-task E_rel at d_I = d*): MSF at 1e-3 for
# 400 steps / 3e-3 for 200 / 1e-2 for 200 gave 0.89 / 0.89 / 0.80 (faster fits the seen tasks'
# prompts too closely); IST at 0.03 / 0.1 / 0.3 gave 0.77 / 0.90 / 0.89.
STAGE_LR = {"pt": 0.3, "msf": 3e-3, "ist": 0.1, "ft": 1e-4}


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


class UserError(RuntimeError):
    """Something the user can fix; main() prints it without a traceback."""


# -----------------------------------------------------------------------------
# Where things go, which tasks, the model

def stage_dir(cfg):
    run = Path(cfg.run)
    selection = cfg.task or (cfg.tasks_from.replace(",", "+") if cfg.tasks_from else "default")
    if cfg.stage == "msf":
        return run / f"msf-d{cfg.intrinsic_dim}"
    if cfg.stage == "ist":
        kind = "ist" if cfg.subspace == "msf" else "ist-random"
        return run / f"{kind}-d{cfg.intrinsic_dim}-s{cfg.data_seed}-{selection}"
    if cfg.init_from_ist:
        return run / f"pt-from-{Path(cfg.init_from_ist).name}"
    return run / f"{cfg.stage}-s{cfg.data_seed}-{selection}"


def prompt_store(run, data_seed):
    """PT writes each task's best prompt here; MSF reads the training tasks' from it."""
    return Path(run) / f"prompts-s{data_seed}"


def load_prompts(store, names):
    """The stored PT prompts of `names` -> (K, P, H)."""
    return torch.stack([checkpoint.load(Path(store) / f"{n}.safetensors")[0]["prompt"] for n in names])


def select_tasks(cfg, tasks):
    if cfg.task:
        if cfg.task not in tasks:
            raise UserError(str(data.unknown_task(cfg.task, tasks)))
        return [cfg.task]
    sections = data.load_split(cfg.split, tasks)
    wanted = cfg.tasks_from.split(",") if cfg.tasks_from else (
        list(sections) if cfg.stage in ("pt", "ft") else ["train"])
    unknown = [s for s in wanted if s not in sections]
    if unknown:
        raise UserError(f"split {cfg.split!r} has no section {unknown}; it has {list(sections)}")
    return list(dict.fromkeys(t for s in wanted for t in sections[s]))


def load_plm(cfg, device):
    from transformers import AutoTokenizer, T5ForConditionalGeneration
    try:
        t5 = T5ForConditionalGeneration.from_pretrained(cfg.model)
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.model)
    except OSError as e:
        raise UserError(f"cannot load --model {cfg.model!r}: {e}\nGive a local folder saved with "
                        "save_pretrained, or a hub name on a machine that can reach the hub.") from e
    return t5.to(device), tokenizer


def prepare(cfg, names, tasks, tokenizer):
    """Tokenised rows of every task: train (one row per reference), dev and test (input, references)."""
    prepared = []
    for name in names:
        split = data.load_task_data(cfg.data_dir, name, cfg.k, cfg.data_seed)
        if cfg.max_test:
            split["test"] = split["test"][:cfg.max_test]
        enc = lambda exs: data.tokenize(tokenizer, [data.format_input(name, e.input, cfg.task_tag) for e in exs],
                                        cfg.max_input_len)
        train_in, pairs = enc(split["train"]), [(i, r) for i, e in enumerate(split["train"]) for r in e.references]
        targets = data.tokenize(tokenizer, [r for _, r in pairs], cfg.max_target_len)
        prepared.append({"name": name, "metric": tasks[name].metric,
                         "train": [(train_in[i], t) for (i, _), t in zip(pairs, targets)],
                         "dev": list(zip(enc(split["dev"]), [e.references for e in split["dev"]])),
                         "test": list(zip(enc(split["test"]), [e.references for e in split["test"]]))})
    return prepared


# -----------------------------------------------------------------------------
# The stages: what trains, what the loss is, what is saved

@dataclass
class Stage:
    module: torch.nn.Module            # owns every trainable tensor of the stage
    prompts: object                    # task_idx (B,) -> prompts (B, P, H), or None (ft)
    groups: list                       # [(task indices, parameter names)] selected and stopped together
    task_weight: object = None         # callable: number of tasks in the step -> weight of each task's loss
    extra_loss: object = None          # callable: tasks in the step -> scalar added once (MSF's α·rec)
    artifact: object = None            # callable: out dir, best module state -> writes what later stages read


def per_task_groups(names, prefix):
    return [([k], [f"{prefix}.{k}"]) for k in range(len(names))]


def setup_pt(cfg, t5, tokenizer, names, prepared):
    """PT: K soft prompts train; loss = Σ_k L_LM(task k); saves each task's best prompt."""
    emb, H = t5.get_input_embeddings().weight.detach().cpu(), t5.config.d_model
    gs = [data.task_generator(cfg.seed, n) for n in names]
    if cfg.init_from_ist:                                  # §4.3: start from the IST solution
        z, ae = load_ist_solution(cfg.init_from_ist, names)
        with torch.no_grad():
            init = ae.decode(z)
    elif cfg.prompt_init == "vocab":
        init = torch.stack([ipt.init_sampled_vocab(emb, cfg.prompt_len, g) for g in gs])
    elif cfg.prompt_init == "labels":
        init = torch.stack([ipt.init_class_labels(emb, class_labels(tokenizer, p["train"]), cfg.prompt_len, g)
                            for p, g in zip(prepared, gs)])
    else:
        init = torch.stack([ipt.init_normal(cfg.prompt_len, H, g) for g in gs])
    module = ipt.SoftPrompts(init.detach())

    def artifact(out, state):
        for k, name in enumerate(names):
            checkpoint.save(prompt_store(cfg.run, cfg.data_seed) / f"{name}.safetensors",
                            {"prompt": state[f"prompts.{k}"]}, task=name, source=str(out))
    return Stage(module, module, per_task_groups(names, "prompts"), artifact=artifact)


def class_labels(tokenizer, train_rows):
    """Distinct target token ids (without </s>) in a task's training rows, first seen first."""
    return [list(t[:-1]) or list(t) for t in dict.fromkeys(tuple(tgt) for _, tgt in train_rows)]


def setup_msf(cfg, t5, tokenizer, names, prepared):
    """MSF: only the autoencoder trains; loss = mean_k L_LM(P̂_k) + α·‖P̂ − P‖²; saves it."""
    store = prompt_store(cfg.run, cfg.data_seed)
    missing = [n for n in names if not (store / f"{n}.safetensors").is_file()]
    if missing:
        raise UserError(f"MSF needs the PT prompt of every training task; {len(missing)} missing in {store}: "
                        f"{', '.join(missing)}\nMake them first: python train.py --stage pt --run {cfg.run} "
                        f"--split {cfg.split} (or make pt)")
    pt_prompts = load_prompts(store, names)
    torch.manual_seed(cfg.seed)
    ae = ipt.PromptAutoencoder(pt_prompts.size(1), pt_prompts.size(2), cfg.intrinsic_dim, cfg.ae_hidden or None)
    module = ipt.ReconstructedPrompts(ae, pt_prompts)
    all_tasks = list(range(len(names)))

    def artifact(out, state):
        checkpoint.save(out / "autoencoder.safetensors", {k.removeprefix("autoencoder."): v for k, v in state.items()},
                        prompt_len=ae.P, d_model=ae.H, intrinsic_dim=cfg.intrinsic_dim,
                        hidden=ae.proj_b[0].out_features, tasks=names, prompts=str(store))
    return Stage(module, module, [(all_tasks, [n for n, _ in module.named_parameters()])],
                 task_weight=lambda n: 1.0 / n,
                 extra_loss=lambda tasks: cfg.alpha * module.reconstruction_error(tasks), artifact=artifact)


def load_autoencoder(path):
    tensors, meta = checkpoint.load(path)
    ae = ipt.PromptAutoencoder(meta["prompt_len"], meta["d_model"], meta["intrinsic_dim"], meta["hidden"])
    checkpoint.fit(ae, tensors, path)
    return ae, meta


def setup_ist(cfg, t5, tokenizer, names, prepared):
    """IST: only z (d_I numbers a task) trains; Proj_b frozen; loss = Σ_k L_LM(Proj_b(z_k)); saves z."""
    msf = Path(cfg.run) / f"msf-d{cfg.intrinsic_dim}"
    codes = None
    if cfg.subspace == "random":                             # untrained Proj_b of the same shape
        torch.manual_seed(cfg.seed)
        ae = ipt.PromptAutoencoder(cfg.prompt_len, t5.config.d_model, cfg.intrinsic_dim, cfg.ae_hidden or None)
    elif not (msf / "autoencoder.safetensors").is_file():
        raise UserError(f"no MSF subspace at {msf}: make it with `make msf DIM={cfg.intrinsic_dim} RUN={cfg.run}` "
                        f"(python train.py --stage msf --intrinsic-dim {cfg.intrinsic_dim} --run {cfg.run})")
    else:
        ae, meta = load_autoencoder(msf / "autoencoder.safetensors")
        if (meta["prompt_len"], meta["d_model"]) != (cfg.prompt_len, t5.config.d_model):
            raise UserError(f"{msf} was trained for prompts {meta['prompt_len']}×{meta['d_model']}, "
                            f"this run has {cfg.prompt_len}×{t5.config.d_model}")
        if cfg.z_init == "mean":
            with torch.no_grad():
                codes = ae.encode(load_prompts(meta["prompts"], meta["tasks"]))
    z = [ipt.init_z(cfg.z_init, 1, cfg.intrinsic_dim, data.task_generator(cfg.seed, n), codes)[0] for n in names]
    module = ipt.IntrinsicPrompts(ae, torch.stack(z))

    def artifact(out, state):
        checkpoint.save(out / "z.safetensors", {name: state[f"z.{k}"] for k, name in enumerate(names)},
                        autoencoder=str(msf / "autoencoder.safetensors") if cfg.subspace == "msf" else "random",
                        seed=cfg.seed)
    return Stage(module, module, per_task_groups(names, "z"), artifact=artifact)


def load_ist_solution(ist_dir, names):
    """Best z of each task of an IST run, and its autoencoder -> (z (K, d_I), autoencoder)."""
    path = Path(ist_dir) / "z.safetensors"
    if not path.is_file():
        raise UserError(f"no finished IST run at {ist_dir} (no z.safetensors)")
    z, meta = checkpoint.load(path)
    if meta["autoencoder"] == "random":
        raise UserError("stage two starts from an IST run in the MSF subspace, not the random one")
    missing = [n for n in names if n not in z]
    if missing:
        raise UserError(f"{ist_dir} has no z for {', '.join(missing)}")
    ae, _ = load_autoencoder(meta["autoencoder"])
    return torch.stack([z[n] for n in names]), ae


def setup_ft(cfg, t5, tokenizer, names, prepared):
    """FT (baseline): every T5 weight trains on one task; loss = L_LM; nothing beyond the checkpoint."""
    t5.requires_grad_(True)
    return Stage(t5, lambda task_idx: None, [([0], [n for n, _ in t5.named_parameters()])])


SETUPS = {"pt": setup_pt, "msf": setup_msf, "ist": setup_ist, "ft": setup_ft}


# -----------------------------------------------------------------------------
# Generation and scoring

@torch.no_grad()
def predict(cfg, t5, tokenizer, prompts, rows):
    """rows: [(task index, input ids)] -> decoded strings, batched across tasks (longest first)."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][1]))
    out = [None] * len(rows)
    for start in range(0, len(order), cfg.eval_batch_size):
        chunk = [order[i] for i in range(start, min(start + cfg.eval_batch_size, len(order)))]
        batch = data.collate([(rows[i][0], rows[i][1], [0]) for i in chunk], tokenizer.pad_token_id).to(t5.device)
        ids = ipt.generate(t5, prompts(batch.task_idx), batch.input_ids, batch.attention_mask,
                           max_new_tokens=cfg.max_target_len, num_beams=cfg.num_beams)
        for i, text in zip(chunk, tokenizer.batch_decode(ids, skip_special_tokens=True)):
            out[i] = text.strip()
    return out


def score_tasks(cfg, t5, tokenizer, stage, prepared, tasks, split):
    """{task index: metric on `split`} for the given tasks, generated in one batched pass."""
    t5.eval()
    rows = [(k, ids) for k in tasks for ids, _ in prepared[k][split]]
    preds = predict(cfg, t5, tokenizer, stage.prompts, rows)
    scores, i = {}, 0
    for k in tasks:
        refs = [list(r) for _, r in prepared[k][split]]
        scores[k] = evaluate.score(prepared[k]["metric"], preds[i:i + len(refs)], refs)
        i += len(refs)
    return scores


# -----------------------------------------------------------------------------
# The loop, written once

def lr_at(cfg, step):
    """Linear warm-up over the first `warmup` of the steps, then linear decay to 0."""
    warm = max(1, int(cfg.warmup * cfg.steps))
    return (step + 1) / warm if step < warm else max(0.0, (cfg.steps - step) / max(1, cfg.steps - warm))


def train(cfg, t5, tokenizer, stage, prepared, out, device):
    names = [p["name"] for p in prepared]
    params = dict(stage.module.named_parameters())
    trainable = [p for p in params.values() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=0.0)
    groups = [{"tasks": tasks, "params": pnames, "best": -math.inf, "best_step": 0, "bad_evals": 0,
               "done": False, "steps": 0} for tasks, pnames in stage.groups]
    best = {n: params[n].detach().clone() for g in groups for n in g["params"]}
    step = 0
    ckpt = out / "checkpoint.safetensors"
    if ckpt.is_file():                                       # resume where the last evaluation left off
        tensors, meta = checkpoint.load(ckpt)
        checkpoint.fit(stage.module, {n[6:]: t for n, t in tensors.items() if n.startswith("param.")}, ckpt)
        best.update({n[5:]: t for n, t in tensors.items() if n.startswith("best.")})
        checkpoint.restore_optimizer(optimizer, tensors)
        step, groups = meta["loop"]["step"], meta["loop"]["groups"]
        log_path = out / "metrics.jsonl"                    # drop records the checkpoint does not cover
        kept = [r for r in log_path.read_text().splitlines() if json.loads(r)["step"] <= step]
        log_path.write_text("".join(r + "\n" for r in kept))
        tqdm.write(f"resuming {out} at step {step}")

    batcher = data.TaskBatcher([p["train"] for p in prepared], cfg.batch_size, cfg.seed)
    n_train = sum(p.numel() for p in trainable)
    n_all = n_train + (0 if stage.module is t5 else sum(p.numel() for p in t5.parameters()))
    tqdm.write(f"{cfg.stage}: {len(names)} tasks | trainable: {n_train:,} || all: {n_all:,} "
               f"({100 * n_train / n_all:.4f}%) | lr {cfg.lr}")
    log = (out / "metrics.jsonl").open("a")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    bar = tqdm(total=cfg.steps, initial=step, desc=f"{cfg.stage} {out.name}", dynamic_ncols=True, disable=None)
    losses, started = [], time.time()
    while step < cfg.steps and not all(g["done"] for g in groups):
        active = [k for g in groups if not g["done"] for k in g["tasks"]]
        batch = batcher.batch(step, active, names, tokenizer.pad_token_id).to(device)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_at(cfg, step)
        if stage.module is t5:
            t5.train()
        loss = forward_backward(cfg, t5, stage, batch, len(names), len(active), autocast)
        if not math.isfinite(loss):
            raise UserError(f"loss is {loss} at step {step} (tasks {', '.join(names[k] for k in active[:5])}…). "
                            f"{'The checkpoint ' + str(ckpt) + ' holds the last evaluation.' if ckpt.is_file() else ''}"
                            f" Lower --lr (now {cfg.lr}) or check these tasks' data, then re-run.")
        for g in groups:                                     # clip per group: tasks stay independent
            if not g["done"] and cfg.clip:
                torch.nn.utils.clip_grad_norm_([params[n] for n in g["params"]], cfg.clip)
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
                dev = score_tasks(cfg, t5, tokenizer, stage, prepared, active, "dev")
            improved = select(cfg, groups, dev, params, best, step)
            record = {"step": step, "loss": sum(losses) / len(losses), "s_per_step": (time.time() - started) / len(losses),
                      "dev": {names[k]: v for k, v in dev.items()}, "active": len(active)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            checkpoint.save(ckpt, {**{f"param.{n}": p for n, p in params.items() if p.requires_grad},
                                   **{f"best.{n}": t for n, t in best.items()},
                                   **checkpoint.optimizer_tensors(optimizer)},
                            loop={"step": step, "groups": groups}, config=asdict(cfg))
            tqdm.write(f"step {step} | loss {record['loss']:.4f} | dev {sum(dev.values()) / len(dev):.3f} "
                       f"over {len(dev)} tasks | improved {improved} | {1000 * record['s_per_step']:.0f} ms/step")
            losses, started = [], time.time()
    bar.close()
    log.close()
    finish(cfg, t5, tokenizer, stage, prepared, groups, best, out)


def forward_backward(cfg, t5, stage, batch, num_tasks, num_active, autocast):
    """Backpropagate the stage's loss over the step's rows, in chunks of --rows-per-forward.
    Each task's loss is its token mean over the whole step, so chunking leaves the gradient as is."""
    tokens = (batch.labels != ipt.IGNORE).float().sum(1)
    count = tokens.new_zeros(num_tasks).index_add(0, batch.task_idx, tokens).clamp(min=1)   # (K,)
    weight = stage.task_weight(num_active) if stage.task_weight else 1.0
    chunk = cfg.rows_per_forward or batch.input_ids.size(0)
    total = 0.0
    for start in range(0, batch.input_ids.size(0), chunk):
        rows = slice(start, start + chunk)
        with autocast:
            losses = ipt.token_losses(t5, stage.prompts(batch.task_idx[rows]), batch.input_ids[rows],
                                      batch.attention_mask[rows], batch.labels[rows], cfg.label_smoothing)
        loss = weight * (losses.sum(1) / count[batch.task_idx[rows]]).sum()          # Σ_k w·mean_k
        if start == 0 and stage.extra_loss:
            loss = loss + stage.extra_loss(batch.task_idx.unique())
        loss.backward()
        total += loss.item()
    return total


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


def finish(cfg, t5, tokenizer, stage, prepared, groups, best, out):
    """Load every group's best-dev state, score the test sets, write results.tsv and the artifact."""
    checkpoint.fit(stage.module, best, "best state")
    state = {n: p.detach().clone() for n, p in stage.module.named_parameters()}
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=t5.device.type == "cuda"):
        test = score_tasks(cfg, t5, tokenizer, stage, prepared, range(len(prepared)), "test")
    dev_best = {k: g["best"] for g in groups for k in g["tasks"]}
    lines = ["task\tmetric\tdev\ttest\tsteps\tbest_step"]
    for g in groups:
        for k in g["tasks"]:
            p = prepared[k]
            lines.append(f"{p['name']}\t{p['metric']}\t{dev_best[k]:.4f}\t{test[k]:.4f}\t{g['steps']}\t{g['best_step']}")
    if stage.artifact:
        stage.artifact(out, state)
    (out / "results.tsv").write_text("\n".join(lines) + "\n")
    tqdm.write(f"results: {out / 'results.tsv'} (test mean {sum(test.values()) / len(test):.3f})")


# -----------------------------------------------------------------------------

def run(cfg):
    tasks = data.load_tasks(cfg.tasks_file)
    names = select_tasks(cfg, tasks)
    missing = data.missing_tasks(cfg.data_dir, names, cfg.k, cfg.data_seed)
    if missing and not cfg.allow_missing:
        raise UserError(f"{len(missing)} of {len(names)} tasks have no data in {cfg.data_dir} "
                        f"(k={cfg.k}, seed {cfg.data_seed}): {', '.join(missing)}\n"
                        f"Add their files, or pass --allow-missing to train the other {len(names) - len(missing)}.")
    names = [n for n in names if n not in missing]
    if not names:
        raise UserError("no task to train")
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg.lr = cfg.lr or STAGE_LR[cfg.stage]
    out = stage_dir(cfg)
    t5, tokenizer = load_plm(cfg, device)
    ipt.freeze(t5)
    prepared = prepare(cfg, names, tasks, tokenizer)
    # fine-tuning needs a fresh T5 per task; every other stage trains all its tasks in one loop
    jobs = [(out / n, [p]) for n, p in zip(names, prepared)] if cfg.stage == "ft" else [(out, prepared)]
    t5_trained = False
    for job_out, job_tasks in jobs:
        saved = job_out / "config.json"
        if saved.is_file() and not same_run(json.loads(saved.read_text()), asdict(cfg), [p["name"] for p in job_tasks]):
            raise UserError(f"{job_out} holds a run with other settings (see its config.json); "
                            "use another --run or delete that folder")
        if (job_out / "results.tsv").is_file():
            tqdm.write(f"{job_out} is finished (results.tsv); skipping")
            continue
        job_out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({**asdict(cfg), "tasks": [p["name"] for p in job_tasks], "missing": missing}, indent=1))
        if cfg.stage == "ft" and t5_trained:                  # fine-tuning changed it: start from a fresh copy
            t5, tokenizer = load_plm(cfg, device)
        t5_trained = cfg.stage == "ft"
        stage = SETUPS[cfg.stage](cfg, t5, tokenizer, [p["name"] for p in job_tasks], job_tasks)
        stage.module.to(device)
        train(cfg, t5, tokenizer, stage, job_tasks, job_out, device)
        if missing:                                          # --allow-missing: say what was left out
            with (job_out / "results.tsv").open("a") as f:
                f.write(f"# missing (no data, not trained): {', '.join(missing)}\n")
    return out


def same_run(saved, now, names):
    """A resumed run must have the same tasks and every setting but the purely operational ones."""
    operational = {"device", "eval_batch_size", "rows_per_forward", "allow_missing"}
    return saved.get("tasks") == names and all(saved.get(k) == v for k, v in now.items() if k not in operational)


def main(argv=None):
    try:
        cfg = parse_args(argv)
        run(cfg)
    except (UserError, data.DataError, checkpoint.CheckpointError, ValueError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted: the last checkpoint holds every finished evaluation; re-run the same command to resume")


if __name__ == "__main__":
    main()
