"""
A plan cut into pieces that each fit one device command (`make real` on a lent GPU, 10 minutes a
command), with each stage's and each piece's projected time: `--pieces 9` prints them and runs nothing;
`--stop-after 9` then runs one piece a command (tools/real_device.sh).

A stage's time is projected from what it computes, counted from its data files, and what a row costs:

  training rows   steps × --batch-size × its tasks (a forward and a backward each)
  scored rows     (evaluations × dev rows + test rows) per task, each rank-classified row once per
                  option (a class label) and a generated row as --max-target-len forwards of one token

The row costs are measured on this project's machines (tools/BENCH.md), per kind of device; a CPU's are the
SmolLM2 slice's on 2 cores, a GPU's are projected from the H100's measured T5-base step by the PLM's size.
A stage projected past a piece resumes in the next from its last checkpoint (every --eval-every steps).
"""
import math

import data

# seconds a row costs: (training, one scoring forward), SmolLM2-135M at --max-input-len 64–128.
# cpu: the LoRA slice (tools/BENCH.md, 2026-12-04, 2 cores of an AMD EPYC): 16 s a step of 16 rows, and
# 329 s for the untuned model's ~1,600 rank-classification forwards. cuda: the H100's 1.1–1.4 ms a
# T5-base training row (223 M parameters, tools/BENCH.md) times 135/223, a forward a third of that.
ROW_SECONDS = {"cpu": (1.0, 0.2), "cuda": (0.8e-3, 0.27e-3)}
STEP_SECONDS = {"cpu": 0.0, "cuda": 0.03}             # a GPU step's launches and optimiser, whatever its rows
TRAINS = {"pt", "msf", "ist", "ft", "did", "mpt"}


def rows(cfg, names, tasks):
    """(training rows, scoring forwards) of one train.py stage of `names`, from its data files."""
    training = cfg.steps * cfg.batch_size * len(names) if cfg.stage in TRAINS else 0
    evaluations = math.ceil(cfg.steps / cfg.eval_every) if cfg.stage in TRAINS else 1
    scored = 0
    for name in names:
        count = {}
        for split in ("dev", "test", "train"):
            path = data.task_file(cfg.data_dir, name, split, cfg.k, cfg.data_seed)
            count[split] = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        test = min(len(count["test"]), cfg.max_test) if cfg.max_test else len(count["test"])
        if cfg.eval == "generate" or tasks[name].type != "cls":
            per_row = cfg.max_target_len
        else:
            per_row = max(1, len({line.rsplit("\t", 1)[-1] for line in count["train"]}))   # the options
        both = 2 if cfg.eval == "both" and tasks[name].type == "cls" else 1
        scored += (evaluations * len(count["dev"]) + test) * per_row * both
    return training, scored


def projected(cfg, names, tasks, device):
    """Seconds the stage is projected to take on `device` (cpu or cuda)."""
    train_s, forward_s = ROW_SECONDS[device]
    training, scored = rows(cfg, names, tasks)
    steps = cfg.steps if cfg.stage in TRAINS else 0
    return training * train_s + scored * forward_s + steps * STEP_SECONDS[device]


def cut(stages, minutes):
    """[(job, seconds)] in plan order -> [[(job, seconds)]]: consecutive stages while a piece's projected
    total stays within `minutes`; a stage longer than a piece is a piece of its own."""
    pieces, current, total = [], [], 0.0
    for job, seconds in stages:
        if current and total + seconds > 60 * minutes:
            pieces.append(current)
            current, total = [], 0.0
        current.append((job, seconds))
        total += seconds
    return pieces + [current] * bool(current)


def report(pieces, minutes, device, out):
    """Print each piece: its projected minutes and its stages."""
    total = sum(s for piece in pieces for _, s in piece)
    print(f"{sum(map(len, pieces))} stages to run in {len(pieces)} pieces of at most {minutes:g} projected min on "
          f"{device} ({total / 3600:.1f} h in all; projected, not measured: paper/pieces.py)", file=out)
    for i, piece in enumerate(pieces, 1):
        seconds = sum(s for _, s in piece)
        over = f" (longer than a piece: it resumes across {math.ceil(seconds / 60 / minutes)} commands)" \
            if len(piece) == 1 and seconds > 60 * minutes else ""
        print(f"piece {i}: {seconds / 60:.1f} min{over}", file=out)
        for job, s in piece:
            print(f"  {s / 60:6.1f} min  {job.command()}", file=out)
