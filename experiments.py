"""
The paper's experiments as one plan (§4.1–4.3): every train.py stage that the results need, run in
order. A finished stage is skipped and an unfinished one resumes (train.py does both), so an
interrupted `make paper` continues where it stopped. report.py turns the folders into the paper's
figures and tables; a result whose stage has not run is named there with the command that makes it.

Under --run (default runs/paper):
  splits/all.txt, splits/heldout.txt   the tasks PT and FT cover; every split's held-out tasks
  untuned-s100-all/                    the PLM with no prompt (P = 0): what prompt tuning must beat
  pt-s100-all/, prompts-s100/          PT of every task: the E_rel^PT reference and MSF's inputs
  ft-s100-all/<task>/                  full fine-tuning of every task: the E_rel^FT reference
  <split>/msf-d<d>/                    per split and d_I: MSF on the split's training tasks,
  <split>/reconstruct-d<d>-…/            its reconstruction of the held-out tasks' own PT prompts,
  <split>/ist-d<d>-…/                    IST on seen tasks (same data, and resampled: seed 21) and held-out ones
  random-subspace/ist-random-d<d>-…/   the random-subspace baseline on every held-out task

    python experiments.py                          # make paper: on the offline world, all three splits
    python experiments.py --demo                   # make demo: the random split, no fine-tuning
    python experiments.py --data-dir ../shared/data/crossfit --model <T5 folder> --splits cls --allow-missing
"""
import argparse
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import data
import train
import world

SPLITS = ("random", "non-cls", "cls")                 # the paper's Fig. 3 order: (a, b), (c, d), (e, f)
RESAMPLED_SEED = 21                                   # T_train^diff: another of CrossFit's K-shot samples


@dataclass
class Job:
    """One train.py stage: its arguments and the folder it writes."""
    argv: list
    folder: Path

    def command(self):
        return "python train.py " + shlex.join(self.argv)

    def done(self):
        return (self.folder / "results.tsv").is_file() or any(self.folder.glob("*/results.tsv"))


@dataclass
class Cell:
    """One number of a figure or table: the mean over `tasks` of the scores in `job`'s results."""
    split: str
    challenge: str                                    # "T_train(MSF)", "T_test^in(IST)", …
    dim: int
    job: Job
    tasks: list


@dataclass
class Plan:
    jobs: list = field(default_factory=list)          # in the order they must run
    cells: list = field(default_factory=list)
    pt: Job = None
    ft: Job = None
    untuned: Job = None
    meta: dict = field(default_factory=dict)          # what the report says about the setting

    def add(self, job):
        if all(j.folder != job.folder for j in self.jobs):
            self.jobs.append(job)
        return job


def heldout_label(section, method):
    """test -> T_test(IST); test_in -> T_test^in(IST)."""
    return f"T_test{'^' + section[5:] if section.startswith('test_') else ''}({method})"


def plan(args):
    """Every stage and every result cell of the experiments `args` asks for."""
    run = Path(args.run)
    tasks = data.load_tasks(args.tasks_file)
    splits = {s: data.load_split(split_path(args, s), tasks) for s in args.splits}
    everything = list(dict.fromkeys(t for secs in splits.values() for sec in secs.values() for t in sec))
    heldout = list(dict.fromkeys(t for secs in splits.values() for s, sec in secs.items() if s != "train" for t in sec))
    data.write_split(run / "splits" / "all.txt", {"all": everything})
    data.write_split(run / "splits" / "heldout.txt", {"test": heldout})
    common = ["--data-dir", args.data_dir, "--tasks-file", args.tasks_file, "--model", args.model,
              "--prompt-len", str(args.prompt_len), "--batch-size", str(args.batch_size),
              "--eval-every", str(args.eval_every), *shlex.split(args.train_args)]
    if args.allow_missing:
        common.append("--allow-missing")

    def job(folder_run, split_file, *extra):
        argv = [*common, "--run", str(folder_run), "--split", str(split_file), *map(str, extra)]
        return Job(argv, train.stages.stage_dir(train.parse_args(argv)))

    p = Plan(meta={"splits": splits, "dims": args.dims, "planted": args.planted, "source": args.source,
                   "tasks_file": args.tasks_file})
    p.untuned = p.add(job(run, run / "splits" / "all.txt", "--stage", "untuned", "--tasks-from", "all"))
    p.pt = p.add(job(run, run / "splits" / "all.txt", "--stage", "pt", "--tasks-from", "all", "--steps", args.pt_steps,
                     *(["--lr", args.pt_lr] if args.pt_lr else [])))
    if args.ft:
        p.ft = p.add(job(run, run / "splits" / "all.txt", "--stage", "ft", "--tasks-from", "all", "--steps", args.ft_steps))
    store = ["--prompt-store", str(run / "prompts-s100")]
    for d in args.dims:
        rand = p.add(job(run / "random-subspace", run / "splits" / "heldout.txt", "--stage", "ist",   # split-free
                         "--subspace", "random", "--intrinsic-dim", d, "--steps", args.ist_steps, "--tasks-from", "test"))
        for s, sections in splits.items():
            held = [sec for sec in sections if sec != "train"]
            where = (run / s, split_path(args, s))
            msf = p.add(job(*where, "--stage", "msf", "--intrinsic-dim", d, "--steps", args.msf_steps, *store))
            rec = p.add(job(*where, "--stage", "reconstruct", "--intrinsic-dim", d, *store))
            same = p.add(job(*where, "--stage", "ist", "--intrinsic-dim", d, "--steps", args.ist_steps,
                             "--tasks-from", ",".join(["train", *held])))
            diff = p.add(job(*where, "--stage", "ist", "--intrinsic-dim", d, "--steps", args.ist_steps,
                             "--data-seed", RESAMPLED_SEED, "--tasks-from", "train"))
            p.cells += [Cell(s, "T_train(MSF)", d, msf, sections["train"]),
                        Cell(s, "T_train^same(IST)", d, same, sections["train"]),
                        Cell(s, "T_train^diff(IST)", d, diff, sections["train"])]
            for sec in held:
                p.cells += [Cell(s, heldout_label(sec, "MSF"), d, rec, sections[sec]),
                            Cell(s, heldout_label(sec, "IST"), d, same, sections[sec]),
                            Cell(s, heldout_label(sec, "random"), d, rand, sections[sec])]
    return p


def split_path(args, name):
    """A split name of the data's own splits/ folder (the world has one), else of the project's."""
    own = Path(args.splits_dir) / f"{name}.txt" if args.splits_dir else None
    return str(own) if own and own.is_file() else name


def execute(p):
    """Run every job of the plan that has not finished, in order."""
    todo = [j for j in p.jobs if not j.done()]
    print(f"{len(p.jobs)} stages planned, {len(p.jobs) - len(todo)} already finished")
    for i, job in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {job.command()}", flush=True)
        train.main(job.argv)


# make real: PT -> MSF -> IST (seen and unseen) on the random split's tasks that have data, with
# SmolLM2-135M, sized to finish in minutes on one GPU (all 75 tasks) and to run on a CPU with
# `--splits cls-small` (six cls tasks and two held out). A decoder-only model's embeddings are
# small (|e| ~ 1, T5's ~ 10^2), so PT steps at 0.03 from sampled vocabulary, not 0.3 from N(0, 0.02²).
REAL = {"data_dir": str(data.HERE.parent / "shared" / "data" / "crossfit"), "model": "smollm2", "run": "runs/smollm2",
        "splits": "random", "dims": "5", "prompt_len": 20, "eval_every": 50, "ft": False, "allow_missing": True,
        "pt_lr": 0.03}
REAL_TRAIN_ARGS = "--max-input-len 128 --max-target-len 16 --max-test 200 --eval-batch-size 128 --prompt-init vocab"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="", help="output folder (default runs/paper, or runs/demo with --demo)")
    p.add_argument("--data-dir", default="", help="CrossFit-layout folder; empty: the offline world (built if needed)")
    p.add_argument("--tasks-file", default="", help="task table (default: the world's, or tasks.txt)")
    p.add_argument("--splits-dir", default="", help="folder of split files (default: the world's, or splits/)")
    p.add_argument("--model", default="", help="T5 name or folder (default: the world's model)")
    p.add_argument("--splits", default=",".join(SPLITS), help="comma-separated: random, non-cls, cls")
    p.add_argument("--dims", default="", help="the d_I sweep (default 1,2,3,4,5,6,8 on the world; 1,5,10,25,50,100 on real data)")
    p.add_argument("--prompt-len", type=int, default=0, help="P (default: the world's 4; 100 on real data)")
    p.add_argument("--batch-size", type=int, default=4, help="rows per task per step")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--pt-steps", type=int, default=300)
    p.add_argument("--pt-lr", type=float, default=0.0, help="PT's learning rate; 0: train.py's")
    p.add_argument("--ft-steps", type=int, default=300)
    p.add_argument("--msf-steps", type=int, default=200)
    p.add_argument("--ist-steps", type=int, default=150)
    p.add_argument("--ft", action=argparse.BooleanOptionalAction, default=True, help="fine-tuning baseline (E_rel^FT)")
    p.add_argument("--allow-missing", action="store_true", help="train on the tasks present (real data)")
    p.add_argument("--train-args", default="", help="more train.py options for every stage, quoted")
    p.add_argument("--demo", action="store_true", help="the README's demo: random split only, no fine-tuning")
    p.add_argument("--real", action="store_true", help="make real: the real CrossFit tasks with SmolLM2 "
                                                       "(defaults in REAL; any option above overrides them)")
    p.add_argument("--report-only", action="store_true", help="run nothing: write the report of what has finished")
    args = p.parse_args(argv)
    if args.real:
        given = p.parse_args([]).__dict__
        for name, value in REAL.items():
            if getattr(args, name) == given[name]:
                setattr(args, name, value)
        args.train_args = f"{REAL_TRAIN_ARGS} {args.train_args}"           # later options win in argparse
    if args.demo:
        args.splits, args.ft, args.run = "random", False, args.run or "runs/demo"
    args.run = args.run or "runs/paper"
    args.splits = [s for s in args.splits.split(",") if s]
    if args.data_dir:
        args.source, args.planted = f"{args.data_dir} with {args.model}", {}
        args.tasks_file = args.tasks_file or str(data.HERE / "tasks.txt")
        args.dims = args.dims or "1,5,10,25,50,100"
        args.prompt_len = args.prompt_len or 100
        if not args.model:
            p.error("--model is needed with --data-dir (a T5 name or folder)")
    else:
        root = world.build()
        cfg = json.loads((root / "world.json").read_text())["config"]
        args.data_dir, args.model = str(root / "data"), args.model or str(root / "model")
        args.tasks_file, args.splits_dir = str(root / "tasks.txt"), args.splits_dir or str(root / "splits")
        args.source = f"the offline world (d* = {cfg['dim']} per kind)"
        args.planted = {"random": cfg["dim"], "cls": cfg["dim"], "non-cls": cfg["dim"]}   # see world.py
        args.dims = args.dims or "1,2,3,4,5,6,8"
        args.prompt_len = args.prompt_len or cfg["prompt_len"]
    args.dims = [int(d) for d in args.dims.split(",")]
    return args


def main(argv=None):
    import report
    args = parse_args(argv)
    started = time.time()
    p = plan(args)
    if not args.report_only:
        execute(p)
    return report.write(p, Path(args.run), time.time() - started)


if __name__ == "__main__":
    main()
