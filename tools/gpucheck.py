"""
The device check (`make gpu-check`): one prepared run for a lent GPU that measures what a multi-task
prompt-tuning step costs and where, and writes it as it goes to <out>/gpu-check.md and .json (a run
cut off keeps every part it finished):

  1. the step, split: batching (collate and copy), forward+backward, optimiser (clip, AdamW, zero),
     timed with CUDA events after warm-up; tokens/s; FLOPs (torch.utils.flop_counter) as a fraction
     of the card's bf16 peak; peak memory after a reset; which SDPA kernel ran (from the profiler);
  2. each optimisation against the unoptimised step (fp32 weights under autocast, clip_grad_norm_ per
     task, unfused AdamW, one pass): its time and its largest loss and gradient difference. Those in
     train.py (bf16 weights, clipping at once) and candidates not yet there (fused AdamW, passes under
     a token budget) are marked as such;
  3. generation: rows/s of dev generation, HF generate against decode.py's cached greedy loop, and
     how many rows' answers differ; rank classification, a forward per (row, option) against the
     encoder once per row;
  4. with --ratio, tools/bench.py's whole-procedure ratio, per task against multi-task.

    python3 -m tools.gpucheck --out "$OUT"                                   # on the device: T5-base shape, 100 × 8
    python -m tools.gpucheck --device cpu --shape tiny --tasks 4 --rows 2    # anywhere (tests/test_gpucheck.py)
"""
import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import torch

import cli
import data
import plm
import trainstep
from tools import bench


class Timer:
    """Seconds of a block: CUDA events on a GPU (no host sync inside), perf_counter on a CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000
        else:
            self.seconds = time.perf_counter() - self.t0


@dataclasses.dataclass
class Variant:
    name: str
    in_train: bool                     # train.py does it (else a candidate, measured here only)
    bf16_weights: bool = False
    clip_at_once: bool = False
    fused_adam: bool = False
    tokens_per_forward: int = 0


VARIANTS = [Variant("unoptimised", True), Variant("bf16 weights", True, bf16_weights=True),
            Variant("clipping at once", True, clip_at_once=True),
            Variant("fused AdamW", False, fused_adam=True),
            Variant("passes ≤ 32768 tokens", False, tokens_per_forward=32768),
            Variant("all of the above", False, True, True, True, 32768)]


def one_step(cfg, model, stage, batcher, names, pad_id, device, v, optimizer, timers):
    """One multi-task step as train.py takes it, in three timed parts -> (loss, {name: grad}, {name:
    parameter after the step})."""
    K = len(names)
    with Timer(device) as t:
        batch = batcher.batch(0, list(range(K)), names, pad_id).to(device)
    timers["batching"].append(t.seconds)
    c = dataclasses.replace(cfg, tokens_per_forward=v.tokens_per_forward)
    with Timer(device) as t:
        loss = trainstep.forward_backward(c, model, stage, batch, K, trainstep.autocast(c, device))
    timers["forward+backward"].append(t.seconds)
    grads = {n: p.grad.detach().clone() for n, p in stage.module.named_parameters() if p.grad is not None}
    groups = [[p] for p in stage.module.parameters()]
    with Timer(device) as t:
        if v.clip_at_once:
            trainstep.clip_per_group(groups, cfg.clip)
        else:
            for group in groups:
                torch.nn.utils.clip_grad_norm_(group, cfg.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    timers["optimiser"].append(t.seconds)
    return float(loss), grads, {n: p.detach().clone() for n, p in stage.module.named_parameters()}


def measure_variant(cfg, shape, tokenizer, prepared, device, v, steps):
    """A fresh frozen model and PT stage under variant v: median seconds of each part of a step (after
    one warm-up step), and the first step's loss, gradients and updated parameters."""
    import stages
    model = bench.frozen_t5(shape, len(tokenizer), device)
    if v.bf16_weights:
        plm.weights_in(model, torch.bfloat16)
    names = [p["name"] for p in prepared]
    stage = stages.setup_pt(cfg, model, tokenizer, names, prepared)
    stage.module.to(device)
    optimizer = torch.optim.AdamW(stage.module.parameters(), lr=cfg.lr, weight_decay=0.0,
                                  **({"fused": True} if v.fused_adam else {}))
    batcher = data.TaskBatcher([p["train"] for p in prepared], cfg.batch_size, cfg.seed)
    timers = {"batching": [], "forward+backward": [], "optimiser": []}
    first = None
    for step in range(steps + 1):
        got = one_step(cfg, model, stage, batcher, names, tokenizer.pad_token_id, device, v, optimizer, timers)
        first = first or got
    medians = {k: statistics.median(x[1:]) for k, x in timers.items()}      # the first: warm-up
    return medians, first, model, stage


def attention_kernels(cfg, model, stage, prepared, tokenizer, device):
    """Names of the attention kernels one forward+backward ran (flash, efficient, cudnn or math)."""
    from torch.profiler import ProfilerActivity, profile
    names = [p["name"] for p in prepared]
    batch = data.TaskBatcher([p["train"] for p in prepared], cfg.batch_size, cfg.seed).batch(
        0, list(range(len(names))), names, tokenizer.pad_token_id).to(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        trainstep.forward_backward(cfg, model, stage, batch, len(names), trainstep.autocast(cfg, device))
    keys = {e.key for e in prof.key_averages()}
    found = sorted(k for k in keys if any(w in k.lower() for w in ("flash", "efficient", "cudnn", "attention")))
    stage.module.zero_grad(set_to_none=True)
    return found[:8]


def generation(cfg, model, tokenizer, prepared, device):
    """Dev generation of every task, greedy, by HF generate and by decode.py's loop: rows/s of each,
    their ratio, and how many rows' answers differ (none in fp32; bf16 may tip a near tie)."""
    rows = [(k, ids) for k, p in enumerate(prepared) for ids, _ in p["dev"]]
    got = {}
    for decoder in ("hf", "own"):
        run = dataclasses.replace(cfg, decoder=decoder)
        with trainstep.autocast(cfg, device):
            plm.predict(run, model, tokenizer, lambda idx: None, rows[:8])             # warm-up
            with Timer(device) as t:
                answers = plm.predict(run, model, tokenizer, lambda idx: None, rows)
        got[decoder] = {"seconds": t.seconds, "rows_per_s": len(rows) / t.seconds, "answers": answers}
    return {"rows": len(rows), "hf_rows_per_s": got["hf"]["rows_per_s"], "own_rows_per_s": got["own"]["rows_per_s"],
            "own_over_hf": got["own"]["rows_per_s"] / got["hf"]["rows_per_s"],
            "rows_differing": sum(a != b for a, b in zip(got["hf"]["answers"], got["own"]["answers"]))}


def ranking(cfg, model, tokenizer, prepared, device):
    """Rank classification of the cls tasks' dev rows: a forward per (row, option) pair against the
    encoder once per row (plm.option_scores_t5): pairs/s of each and their largest score difference."""
    rows = [(k, ids) for k, p in enumerate(prepared) if p["options"] for ids, _ in p["dev"]]
    pairs = [(i, o) for i, (k, _) in enumerate(rows) for o in prepared[k]["options"]]
    if not pairs:
        return {"pairs": 0}
    got = {}
    for name, scores in (("per_pair", plm.option_scores), ("encode_once", plm.option_scores_t5)):
        with torch.no_grad(), trainstep.autocast(cfg, device):
            scores(cfg, model, tokenizer, lambda idx: None, rows[:4], [q for q in pairs if q[0] < 4])   # warm-up
            with Timer(device) as t:
                got[name] = scores(cfg, model, tokenizer, lambda idx: None, rows, pairs)
        got[name + "_pairs_per_s"] = len(pairs) / t.seconds
    return {"pairs": len(pairs), "per_pair_pairs_per_s": got["per_pair_pairs_per_s"],
            "encode_once_pairs_per_s": got["encode_once_pairs_per_s"],
            "speed_up": got["encode_once_pairs_per_s"] / got["per_pair_pairs_per_s"],
            "largest_score_difference": max(abs(a - b) for a, b in zip(got["per_pair"], got["encode_once"]))}


class Report:
    """gpu-check.json and gpu-check.md under `out`, rewritten after every part."""

    def __init__(self, out):
        self.out, self.parts = Path(out), {}
        self.out.mkdir(parents=True, exist_ok=True)

    def add(self, name, value):
        self.parts[name] = value
        (self.out / "gpu-check.json").write_text(json.dumps(self.parts, indent=1, default=str))
        lines = ["# gpu-check", ""]
        for part, got in self.parts.items():
            lines += [f"## {part}", "", "```", json.dumps(got, indent=1, default=str), "```", ""]
        (self.out / "gpu-check.md").write_text("\n".join(lines))
        print(f"{name}: {json.dumps(value, default=str)}", flush=True)


@cli.command()
def main(argv=None):
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="", help="default: cuda when present")
    p.add_argument("--shape", choices=list(bench.SHAPES), default="", help="default: base on CUDA, tiny on a CPU")
    p.add_argument("--tasks", type=int, default=100)
    p.add_argument("--rows", type=int, default=8, help="rows per task per step")
    p.add_argument("--steps", type=int, default=5, help="timed steps of each variant (after one warm-up)")
    p.add_argument("--prompt-len", type=int, default=100)
    p.add_argument("--ratio", action="store_true", help="also tools/bench.py's whole-procedure ratio (minutes)")
    p.add_argument("--out", default=os.environ.get("OUT", "runs/gpu-check"))
    p.add_argument("--data-dir", default=str(bench.REAL))
    args = p.parse_args(argv)
    cli.at_least(p, args, {"--tasks": 1, "--rows": 1, "--steps": 1, "--prompt-len": 1})
    cli.folder_option("--out", args.out, must_exist=False, writable=True)
    device = plm.resolve_device(args.device)
    shape = args.shape or ("base" if device.type == "cuda" else "tiny")
    cli.checked()
    report = Report(args.out)
    cfg, model, tokenizer, prepared, source = bench.workload(shape, args.tasks, args.rows, 4, args.prompt_len, 16,
                                                             args.data_dir, device, "bf16", 0)
    report.add("setup", {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                         "shape": shape, "tasks": args.tasks, "rows_per_task": args.rows, "P": args.prompt_len,
                         "data": source, "torch": torch.__version__})
    baseline, results = None, {}
    for v in VARIANTS:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        medians, (loss, grads, params), model, stage = measure_variant(cfg, shape, tokenizer, prepared, device, v,
                                                                       args.steps)
        baseline = baseline or (loss, grads, params)
        results[v.name] = {"in train.py": v.in_train, **{k: round(s * 1000, 3) for k, s in medians.items()},
                           "unit": "ms", "loss_diff": abs(loss - baseline[0]),
                           "max_grad_diff": max(float((grads[n] - baseline[1][n]).abs().max()) for n in grads),
                           "max_param_diff_after_step": max(float((params[n] - baseline[2][n]).abs().max())
                                                            for n in params),
                           "peak_GiB": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}
        report.add(f"step: {v.name}", results[v.name])
    flops, pad_one, _ = bench.step_flops_and_padding(cfg, model, tokenizer, prepared, device, n=1)
    top, how = bench.peak(device, True)
    fb = results["all of the above"]["forward+backward"] / 1000
    tokens = sum(len(x) + len(y) for q in prepared for x, y in q["train"][:args.rows])
    report.add("the optimised step", {"GFLOP": flops / 1e9, "fraction_of_peak": flops / fb / top if top else None,
                                      "peak": how, "tokens_per_s": tokens / fb, "padding_one_pass": pad_one,
                                      "attention_kernels": attention_kernels(cfg, model, stage, prepared, tokenizer, device)})
    report.add("generation", generation(cfg, model, tokenizer, prepared, device))
    report.add("rank classification", ranking(cfg, model, tokenizer, prepared, device))
    if args.ratio:
        a = bench.procedure(cfg, model, tokenizer, prepared, True, device)
        b = bench.procedure(cfg, model, tokenizer, prepared, False, device)
        report.add("whole procedure", {"per_task_s": a, "multi_task_s": b, "ratio": a["whole"] / b["whole"]})
    return report.parts


if __name__ == "__main__":
    main()
