"""
Benchmark: prompt-tune 20 tasks in one multi-task loop vs the same steps task by task.

Both do the same work (every task gets --steps steps of --batch-size rows) with the same frozen
tiny T5; the multi-task loop puts all tasks' rows into each forward pass. Rounds alternate and the
median is reported, with the ratio taken inside the same run (these machines are noisy).
Data: 20 tasks of ../shared/data/crossfit when present, else the offline world's tasks.

    python bench.py            # make bench
"""
import argparse
import statistics
import time
from pathlib import Path

import torch

import data
import ipt
import stages
import train
import world

REAL = Path(__file__).resolve().parent.parent / "shared" / "data" / "crossfit"


def tasks_and_data():
    if REAL.is_dir():
        names = sorted(p.name for p in REAL.iterdir() if p.is_dir())[:20]
        return REAL, names, data.load_tasks(), "real CrossFit files"
    root = world.build()
    tasks = data.load_tasks(root / "tasks.txt")
    return root / "data", list(tasks)[:20], tasks, "the offline world"


def steps(cfg, t5, tokenizer, prepared, n_steps):
    """n_steps of PT over `prepared` in one loop -> seconds."""
    stage = stages.setup_pt(cfg, t5, tokenizer, [p["name"] for p in prepared], prepared)
    optimizer = torch.optim.AdamW(stage.module.parameters(), lr=cfg.lr)
    batcher = data.TaskBatcher([p["train"] for p in prepared], cfg.batch_size, cfg.seed)
    names, active = [p["name"] for p in prepared], list(range(len(prepared)))
    started = time.perf_counter()
    for step in range(n_steps):
        batch = batcher.batch(step, active, names, tokenizer.pad_token_id)
        train.forward_backward(cfg, t5, stage, batch, len(names), len(active), torch.autocast("cpu", enabled=False))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - started


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="steps per task per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    args = p.parse_args(argv)
    data_dir, names, tasks, source = tasks_and_data()
    cfg = train.Config(data_dir=str(data_dir), prompt_len=20, batch_size=args.batch_size, max_input_len=128,
                       max_target_len=32, lr=0.3)
    texts = [ex.input for n in names for ex in data.read_examples(data.task_file(data_dir, n, "train"))]
    tokenizer = data.train_tokenizer(texts, 2000, Path("cache") / "bench-tokenizer")
    torch.manual_seed(0)
    t5 = ipt.freeze(world.tiny_t5(len(tokenizer), args.d_model, layers=2))
    prepared = data.prepare(cfg, names, tasks, tokenizer)
    examples = len(names) * args.steps * args.batch_size
    print(f"{len(names)} tasks from {source}; T5 d_model {args.d_model}, {sum(p.numel() for p in t5.parameters()):,} "
          f"frozen parameters; {args.steps} steps × {args.batch_size} rows per task per round; torch threads "
          f"{torch.get_num_threads()}")
    multi, single = [], []
    for r in range(args.rounds):
        multi.append(examples / steps(cfg, t5, tokenizer, prepared, args.steps))
        single.append(examples / sum(steps(cfg, t5, tokenizer, [p], args.steps) for p in prepared))
        print(f"round {r + 1}: multi-task {multi[-1]:7.1f} ex/s | task by task {single[-1]:7.1f} ex/s")
    m, s = statistics.median(multi), statistics.median(single)
    print(f"median: multi-task {m:.1f} ex/s, task by task {s:.1f} ex/s, ratio {m / s:.2f}x")


if __name__ == "__main__":
    main()
