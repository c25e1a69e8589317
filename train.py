"""
Training: one hand-written loop for every stage of IPT and its baselines (what each stage trains,
its loss and what it saves: stages.py; the options: config.py).

A run trains a set of tasks at once. Every batch row carries its task's index; each step takes
--batch-size rows from every task still training, and the loss is the sum of the tasks' own mean
losses (MSF: their mean, plus α · reconstruction). In pt and ist each task owns its tensors,
Adam is elementwise and clipping is per task, so a task's run is what it would be alone.
Per task: dev scored by generation every --eval-every steps, the best-dev state kept, test scored
at it. Outputs go to runs/<run>/<stage dir>/ (config.json, metrics.jsonl, results.tsv,
checkpoint.safetensors); re-running the same command resumes it.

    python train.py --stage ist --task glue-sst2
"""
import functools
import json
import math
import os
import time
from dataclasses import asdict, fields, replace

import torch
from tqdm import tqdm

import checkpoint
import cli
import config
import data
import distributed
import lora_stages
import plm
import stages
import trainstep
from config import LORA_LR, OPERATIONAL, STAGE_LR, Config
from data import UserError


def parse_args(argv=None):
    return config.parse_args(argv, __doc__)


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
    if ckpt.exists():                                        # resume where the last evaluation left off
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
        losses.append(trainstep.forward_backward_in_memory(cfg, model, stage, batch, len(names), autocast))
        if cfg.clip:                                         # clip per group: tasks stay independent
            trainstep.clip_per_group([[params[n] for n in g["params"]] for g in groups if not g["done"]], cfg.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        for g in groups:
            g["steps"] += not g["done"]
        bar.update()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            loss = float(torch.stack(losses).double().mean())        # the steps' losses, read once
            per_step = (time.time() - started) / len(losses)         # training only: the read waited for it
            if not math.isfinite(loss):
                kept = f" The checkpoint {ckpt} holds the last evaluation." if ckpt.is_file() else ""
                raise UserError(f"loss is {loss} in steps {step - len(losses) + 1}–{step} (tasks "
                                f"{', '.join(names[k] for k in active[:5])}…).{kept} Lower --lr (now {cfg.lr}) "
                                "or check these tasks' data, then re-run.")
            bar.set_postfix(loss=f"{loss:.4f}", tasks=len(active))
            with autocast:
                dev = plm.score_tasks(cfg, model, tokenizer, stage.prompts, prepared, active, "dev")
            improved = select(cfg, groups, dev, params, best, step)
            record = {"step": step, "loss": loss, "s_per_step": per_step, **(stage.monitor() if stage.monitor else {}),
                      "dev": {names[k]: v for k, v in dev.items()}, "active": len(active)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            checkpoint.save(ckpt, {**{f"param.{n}": p for n, p in params.items() if p.requires_grad},
                                   **{f"best.{n}": t for n, t in best.items()},
                                   **checkpoint.optimizer_tensors(optimizer)},
                            keep_previous=True, loop={"step": step, "groups": groups}, config=asdict(cfg))
            extra = "".join(f" | {k} {record[k]:.4g}" for k in ("reconstruction",) if k in record)
            tqdm.write(f"step {step} | loss {record['loss']:.4f}{extra} | dev {sum(dev.values()) / len(dev):.3f} "
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
        both, ranked = cfg.eval == "both", dict(test)    # --eval both: cls tasks again, by rank classification
        cls = [k for k, p in enumerate(prepared) if p["options"]] if both else []
        if cls:
            ranked.update(plm.score_tasks(replace(cfg, eval="rank"), model, tokenizer, stage.prompts, prepared, cls, "test"))
    dev_best = {k: g["best"] for g in groups for k in g["tasks"]}
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
        first = next(f for s in data.SPLIT_FILES if not (f := data.task_file(cfg.data_dir, missing[0], s, cfg.k,
                                                                             cfg.data_seed)).is_file())
        raise UserError(f"{len(missing)} of {len(names)} tasks have no data in {cfg.data_dir} "
                        f"(k={cfg.k}, seed {cfg.data_seed}): {', '.join(missing)} (no {first})\n"
                        f"Add their files (copy or build the task's files again), or pass --allow-missing to train the other {len(names) - len(missing)}.")
    names = [n for n in names if n not in missing]
    if not names:
        raise UserError("no task to train")
    return names, missing


def run(cfg):
    device = distributed.setup(plm.resolve_device(cfg.device))
    tasks = data.load_tasks(cfg.tasks_file)
    names, missing = planned_tasks(cfg, tasks)
    cfg.lr = cfg.lr or (LORA_LR if cfg.adapter == "lora" else STAGE_LR)[cfg.stage]
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
        pipeline = lora_stages if cfg.adapter == "lora" else stages
        inputs = pipeline.read_inputs(cfg, names, config)
        cli.checked()
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
            stage = pipeline.SETUPS[cfg.stage](cfg, model, tokenizer, job_names, [prepared[n] for n in job_names], **inputs)
            stage.module.to(device)
            train(cfg, model, tokenizer, stage, [prepared[n] for n in job_names], job_out, device, note)
    return out


def finished(cfg, out, names, fingerprints):
    """True if `out` holds this run's results; raises if it holds another run, or this run on
    data that has changed since (resuming would mix the two)."""
    saved = out / "config.json"
    if not saved.exists():
        if any(out.glob("*.safetensors")) or (out / "results.tsv").exists():   # a stage's files, not its settings
            raise UserError(f"{saved} is missing beside that stage's files; delete {out} to start that stage again")
        return False
    try:
        before = json.loads(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError):
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


def check_paths(cfg):
    """The run folder and the model, before anything is read (the data, the task table and the folders
    a stage reads are checked where they are read, each with what makes it)."""
    cli.folder_option("--run", cfg.run, must_exist=False, writable=True)
    plm.model_path(cfg.model)


@cli.command(interrupted="interrupted: the last checkpoint holds every finished evaluation; re-run the same command "
                         "to resume")
def main(argv=None):
    try:
        cfg = parse_args(argv)
        check_paths(cfg)
        run(cfg)
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()
