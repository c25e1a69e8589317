"""
Benchmark of what a user waits for: prompt-tuning N tasks the authors' way and this project's way,
same tasks, steps, evaluation schedule and decoding.

  (a) per task (the authors' procedure, without their grid): one task at a time, its own batches,
      dev scored by generation every --eval-every steps, test generated at the end;
  (b) multi-task: one run of all tasks; each step takes every task's rows, and dev and test are
      generated in batches across tasks.
Both are train.train, the project's one loop (checkpoints and results written as in a real run).
Rounds alternate (a) and (b); medians are compared inside one run (these machines are noisy).

Reported: the whole-procedure ratio and its parts (training steps, dev generation, test generation)
and training examples/s; the FLOPs of a training step, counted by torch.utils.flop_counter (every
matmul and attention product of the frozen model's forward, and of its backward to the prompt:
weight gradients are never computed), as achieved FLOP/s and a fraction of the machine's peak;
the share of a step's x+y tokens that is padding, in one pass and in length-sorted passes under
--tokens-per-forward; with --rows-sweep, a row's cost against rows a step, rows of near-equal length: the
most any batching can win on this model and machine. The frozen T5 runs with plm.sdpa_one_mask, as
train.py's does.

    python -m tools.bench                                # make bench: the tiny T5, then the T5-base shape
    python -m tools.bench --shape base --precision bf16  # on a CPU: also a step in bf16 against fp32
    python -m tools.bench --shape tiny --rows-sweep      # also what batching can win at most: a row's cost by rows a step
    python -m tools.bench --shape base --tasks 100 --rows 8 --device cuda --tokens-per-forward 65536
"""
import argparse
import contextlib
import dataclasses
import io
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch

import cli
import data
import ipt
import plm
import stages
import train
import trainstep
from world import world

REAL = data.HERE.resolve().parent / "shared" / "data" / "crossfit"
# Frozen models with random weights: speed needs no pretrained values. base = t5-base-lm-adapt's shape.
SHAPES = {"tiny": dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4),
          "base": dict(d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_decoder_layers=12, num_heads=12,
                       feed_forward_proj="gated-gelu", vocab_size=32128)}
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}   # dense, FLOP/s


def tasks_and_data(n, real):
    """n tasks (repeated when fewer exist) of the real CrossFit files, else of the offline world."""
    if real.is_dir():
        names = sorted(p.name for p in real.iterdir() if p.is_dir())
        return real, (names * (n // len(names) + 1))[:n], data.load_tasks(), "real CrossFit files"
    root = world.build()
    tasks = data.load_tasks(root / "tasks.txt")
    return root / "data", (list(tasks) * (n // len(tasks) + 1))[:n], tasks, "the offline world"


def frozen_t5(shape, vocab, device):
    from transformers import T5Config, T5ForConditionalGeneration
    torch.manual_seed(0)
    config = T5Config(**{"vocab_size": vocab, **SHAPES[shape]}, dropout_rate=0.0, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=1)
    return ipt.freeze(plm.one_mask(T5ForConditionalGeneration(config)).to(device))


class Clock:
    """Seconds spent in dev and test generation (plm.score_tasks), the rest being training."""
    def __init__(self, device):
        self.device, self.spent, self.inner = device, {"dev": 0.0, "test": 0.0}, plm.score_tasks

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self, cfg, model, tokenizer, prompts, prepared, tasks, split):
        self.sync()
        started = time.perf_counter()
        out = self.inner(cfg, model, tokenizer, prompts, prepared, tasks, split)
        self.sync()
        self.spent[split] += time.perf_counter() - started
        return out


def procedure(cfg, model, tokenizer, prepared, per_task, device):
    """(a) or (b) once, in a fresh folder -> {"whole", "dev", "test", "train"} seconds."""
    clock = Clock(device)
    plm.score_tasks = clock
    jobs = [[p] for p in prepared] if per_task else [prepared]
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            clock.sync()
            started = time.perf_counter()
            for i, job in enumerate(jobs):
                stage = stages.setup_pt(cfg, model, tokenizer, [p["name"] for p in job], job)
                stage.module.to(device)
                (Path(tmp) / str(i)).mkdir()
                train.train(cfg, model, tokenizer, stage, job, Path(tmp) / str(i), device)
            clock.sync()
            whole = time.perf_counter() - started
    finally:
        plm.score_tasks = clock.inner
    return {"whole": whole, **clock.spent, "train": whole - sum(clock.spent.values())}


def first_steps(cfg, model, tokenizer, prepared, device, n):
    """A PT stage over all tasks and the batches of its first n multi-task steps."""
    names = [p["name"] for p in prepared]
    stage = stages.setup_pt(cfg, model, tokenizer, names, prepared)
    stage.module.to(device)
    batcher = data.TaskBatcher([p["train"] for p in prepared], cfg.batch_size, cfg.seed)
    return stage, [batcher.batch(step, list(range(len(names))), names, tokenizer.pad_token_id).to(device)
                   for step in range(n)]


def step_flops_and_padding(cfg, model, tokenizer, prepared, device, n=3):
    """Mean FLOPs of the first n multi-task steps, and the padded share of their x+y tokens in one
    pass and in --tokens-per-forward passes."""
    from torch.utils.flop_counter import FlopCounterMode
    stage, batches = first_steps(cfg, model, tokenizer, prepared, device, n)
    K, autocast = len(prepared), trainstep.autocast(cfg, device)
    flops, real, one_pass, chunked = 0, 0, 0, 0
    for batch in batches:
        with FlopCounterMode(display=False) as counter:
            trainstep.forward_backward_in_memory(cfg, model, stage, batch, K, autocast)
        flops += counter.get_total_flops() / n
        lx, ly = batch.attention_mask.sum(1), (batch.labels != ipt.IGNORE).sum(1)
        real += int((lx + ly).sum())
        one_pass += batch.input_ids.numel() + batch.labels.numel()
        chunked += sum(len(rows) * (T + L) for rows, T, L in trainstep.chunks(batch, cfg.tokens_per_forward)
                       if not isinstance(rows, slice)) or batch.input_ids.numel() + batch.labels.numel()
    return flops, 1 - real / one_pass, 1 - real / chunked


def bf16_against_fp32(cfg, model, tokenizer, prepared, device, rounds=3):
    """Median seconds of one multi-task training step under fp32 and under bf16 autocast, alternated."""
    stage, (batch,) = first_steps(cfg, model, tokenizer, prepared, device, 1)
    K = len(prepared)
    seconds = {"fp32": [], "bf16": []}
    for _ in range(rounds):
        for precision in seconds:
            c = dataclasses.replace(cfg, precision=precision)
            started = time.perf_counter()
            trainstep.forward_backward(c, model, stage, batch, K, trainstep.autocast(c, device))
            seconds[precision].append(time.perf_counter() - started)
            stage.module.zero_grad(set_to_none=True)
    return {k: statistics.median(v) for k, v in seconds.items()}


def cost_per_row(cfg, model, tokenizer, prepared, device, sizes, repeats=5):
    """{rows a step: median seconds a row} of training steps over rows of near-equal length (the
    middle of each of 4 multi-task steps' rows sorted by length: little padding), sizes alternated:
    how much a larger batch can win on this model and machine at most."""
    one_pass, K, autocast = dataclasses.replace(cfg, tokens_per_forward=0), len(prepared), trainstep.autocast(cfg, device)
    stage, batches = first_steps(one_pass, model, tokenizer, prepared, device, 4)
    by_length = [(b, (b.attention_mask.sum(1) + (b.labels != ipt.IGNORE).sum(1)).argsort()) for b in batches]
    middle = lambda r: [b.rows(order[max(0, (len(order) - r) // 2):][:r]) for b, order in by_length]
    seconds = {r: [] for r in sizes}
    for _ in range(repeats):
        for r in sizes:
            steps = middle(r)
            started = time.perf_counter()
            for b in steps:
                trainstep.forward_backward(one_pass, model, stage, b, K, autocast)
                stage.module.zero_grad(set_to_none=True)
            seconds[r].append((time.perf_counter() - started) / sum(len(b.task_idx) for b in steps))
    return {r: statistics.median(v) for r, v in seconds.items()}


def peak(device, bf16):
    """(FLOP/s, how it was reckoned): the card's bf16 dense peak; a CPU's AMX-bf16 peak under bf16
    autocast (1024 FLOP/cycle a core, Intel's figure), else its fp32 FMA peak."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        hit = next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)
        return hit, f"{name}, bf16 dense"
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    mhz = max([float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", info)] or [0.0])
    cores = torch.get_num_threads()
    if bf16 and " amx_bf16" in info:
        per_cycle, how = 1024, "AMX-bf16"
    else:
        lanes = 16 if " avx512f" in info else 8 if " avx2" in info else 4
        per_cycle = lanes * 2 * 2                  # fp32 lanes × 2 (FMA) × 2 FMA units a core (assumed)
        how = f"fp32 {'AVX-512' if lanes == 16 else 'AVX2' if lanes == 8 else 'SSE'}, 2 FMA units"
    return cores * mhz * 1e6 * per_cycle, f"{cores} cores × {mhz / 1000:.2f} GHz × {per_cycle} FLOP/cycle ({how})"


@cli.command()
def main(argv=None):
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=list(SHAPES) + ["both"], default="both")
    p.add_argument("--tasks", type=int, default=0, help="default: 20 (tiny), 4 (base)")
    p.add_argument("--steps", type=int, default=0, help="steps per task; default: 20 (tiny), 4 (base)")
    p.add_argument("--eval-every", type=int, default=0, help="default: half the steps")
    p.add_argument("--rows", type=int, default=4, help="rows per task per step")
    p.add_argument("--max-test", type=int, default=32, help="test rows per task")
    p.add_argument("--prompt-len", type=int, default=20)
    p.add_argument("--tokens-per-forward", type=int, default=-1,
                   help="as train.py's; default: 2048 for tiny (on 2 cores: a multi-task step 165 -> 124 ms), "
                        "0 (one pass) for base, where a step is compute-bound")
    p.add_argument("--eval", choices=["generate", "rank"], default="generate", help="how dev and test are scored")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="as train.py's")
    p.add_argument("--rounds", type=int, default=0, help="default: 7 (tiny: one round's ratio ranges over "
                                                          "1.6-2.9x on a shared 2-core machine), 2 (base)")
    p.add_argument("--rows-sweep", action="store_true", help="also the cost of a row against rows a step "
                                                              "(rows of near-equal length): what batching can win at most")
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=str(REAL), help="real CrossFit files; absent: the offline world")
    args = p.parse_args(argv)
    cli.at_least(p, args, {"--tasks": 0, "--steps": 0, "--eval-every": 0, "--rows": 1, "--max-test": 1,
                           "--prompt-len": 1, "--tokens-per-forward": -1, "--rounds": 0})
    device = plm.resolve_device(args.device)
    cli.checked()
    for shape in (["tiny", "base"] if args.shape == "both" else [args.shape]):
        bench(args, shape, device)


def workload(shape, n, rows, steps, prompt_len, max_test, data_dir, device, precision, tokens_per_forward,
             eval="generate", eval_every=0):
    """n tasks' prepared rows (real files, else the world's; repeated tasks train as distinct ones), a
    tokenizer made from them, a frozen T5 of `shape` and the run's Config -> (cfg, model, tokenizer,
    prepared, where the tasks come from). tools/bench.py's and tools/gpucheck.py's."""
    data_dir, names, tasks, source = tasks_and_data(n, Path(data_dir))
    cfg = train.Config(data_dir=str(data_dir), prompt_len=prompt_len, batch_size=rows, steps=steps,
                       eval_every=eval_every or max(1, steps // 2), max_input_len=128, max_target_len=16,
                       max_test=max_test, lr=0.3, eval_batch_size=256, eval=eval, precision=precision,
                       tokens_per_forward=tokens_per_forward, device=str(device))
    texts = [ex.input for name in dict.fromkeys(names) for ex in data.read_examples(data.task_file(data_dir, name, "train"))]
    with tempfile.TemporaryDirectory() as scratch:           # nothing reads it back: no folder for two benches to share
        tokenizer = data.train_tokenizer(texts, 2000, scratch)
    model = frozen_t5(shape, len(tokenizer), device)
    prepared = data.prepare(cfg, list(dict.fromkeys(names)), tasks, tokenizer)
    prepared = [{**prepared[[q["name"] for q in prepared].index(name)], "name": f"{name}#{i}"}
                for i, name in enumerate(names)]
    return cfg, model, tokenizer, prepared, source


def bench(args, shape, device):
    n = args.tasks or {"tiny": 20, "base": 4}[shape]
    steps = args.steps or {"tiny": 20, "base": 4}[shape]
    cfg, model, tokenizer, prepared, source = workload(
        shape, n, args.rows, steps, args.prompt_len, args.max_test, args.data_dir, device, args.precision,
        {"tiny": 2048, "base": 0}[shape] if args.tokens_per_forward < 0 else args.tokens_per_forward,
        args.eval, args.eval_every)
    print(f"\n{shape} T5 ({sum(q.numel() for q in model.parameters()) / 1e6:.1f}M frozen parameters) on {device}"
          f"{'' if device.type == 'cuda' else f' ({torch.get_num_threads()} threads)'}: {n} tasks from {source}; "
          f"{steps} steps × {args.rows} rows a task, dev every {cfg.eval_every}, test ≤ {args.max_test} rows a task; "
          f"P = {args.prompt_len}; " + (f"greedy generation ≤ {cfg.max_target_len} tokens" if args.eval == "generate"
                                      else "cls tasks by rank classification, the others by generation"))
    runs = {"per task": [], "multi-task": []}
    for r in range(args.rounds or {"tiny": 7, "base": 2}[shape]):
        for name, per_task in (("per task", True), ("multi-task", False)):
            runs[name].append(procedure(cfg, model, tokenizer, prepared, per_task, device))
        print(f"round {r + 1}: per task {runs['per task'][-1]['whole']:.1f} s, multi-task {runs['multi-task'][-1]['whole']:.1f} s")
    med = {name: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for name, rs in runs.items()}
    a, b = med["per task"], med["multi-task"]
    # the ratio of each round's two runs, made back to back, then the median: a machine that slows
    # down between rounds (these are shared) moves both runs of a round, not the ratio
    ratio = lambda k: statistics.median(x[k] / max(y[k], 1e-9) for x, y in zip(runs["per task"], runs["multi-task"]))
    print(f"{'median seconds':<18}{'per task':>10}{'multi-task':>12}{'ratio':>8}  (median of the rounds' ratios)")
    for k, label in (("whole", "whole procedure"), ("train", "  training steps"), ("dev", "  dev generation"),
                     ("test", "  test generation")):
        print(f"{label:<18}{a[k]:>10.2f}{b[k]:>12.2f}{ratio(k):>7.2f}x")
    print("whole-procedure ratio of each round: " + ", ".join(
        f"{x['whole'] / y['whole']:.2f}x" for x, y in zip(runs["per task"], runs["multi-task"])))
    examples = n * steps * args.rows
    print(f"training examples/s: per task {examples / a['train']:.1f}, multi-task {examples / b['train']:.1f}")
    flops, pad_one, pad_chunked = step_flops_and_padding(cfg, model, tokenizer, prepared, device)
    achieved = flops * steps / b["train"]
    top, how = peak(device, trainstep.bf16(cfg, device))
    print(f"a multi-task step: {flops / 1e9:.1f} GFLOP; achieved {achieved / 1e9:.1f} GFLOP/s in the training part"
          + (f" = {100 * achieved / top:.1f}% of peak {top / 1e12:.2f} TFLOP/s ({how})" if top else f" ({how}: peak unknown)"))
    print(f"padding: {100 * pad_one:.0f}% of a multi-task step's x+y tokens in one pass"
          + (f", {100 * pad_chunked:.0f}% in passes of ≤ {cfg.tokens_per_forward} tokens" if cfg.tokens_per_forward else ""))
    if args.rows_sweep:
        sizes = sorted({r for r in (1, 2, 4, 8, 16, 32, 64) if r <= n * args.rows} | {args.rows})
        cost = cost_per_row(cfg, model, tokenizer, prepared, device, sizes)
        print("a row's cost against rows a step, rows of near-equal length: " + ", ".join(
            f"{r}: {1000 * c:.2f} ms ({cost[args.rows] / c:.2f}x {args.rows} rows' rate)" for r, c in cost.items()))
    if args.precision == "bf16" and device.type == "cpu":
        t = bf16_against_fp32(cfg, model, tokenizer, prepared, device)
        print(f"a multi-task step: fp32 {t['fp32']:.2f} s, bf16 autocast {t['bf16']:.2f} s: {t['fp32'] / t['bf16']:.2f}x")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
