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
  <split>/ist-pca-d<d>-…/                beyond the paper (beyond.py): IST through the PT prompts' linear span,
  <split>/mpt/, <split>/ist-mpt-…/         MPT's shared prompt and each held-out task's u, v (--no-linear, --no-mpt)
  <split>/msf-d<d>-seed<N>/, …-msf<N>/ --msf-draws: more draws of the subspace, each with its own users
  random-subspace/ist-random-d<d>-…/   the random-subspace baseline on every held-out task (one draw per seed)
  did/did-d<d>-…/<task>/               the DID baseline (did.py) on every held-out task, at --did-dims
§4.3's analyses (--no-ablations leaves them out):
  random_<n>/msf-d<d>/, …/ist-…        Fig. 5: MSF on n % of the random split's training tasks, IST on its held-out ones
  cls-2K/                              Fig. 6: the cls split's PT, MSF and IST on 2K-shot files
  stability/, random/ist-…-seed<N>/,   Table 4: PT, FT and IST under seeds 43, 44, … (seed 42: the runs above),
  stage-two/pt-from-ist-…/               and stage two, PT started from each IST run's Proj_b(z);
  transfer/pt-transfer-{mean,nearest}-…/   beyond the paper, SPoT's starts under the same seeds (--no-transfer)

    python experiments.py                          # make paper: on the offline world, all three splits
    python experiments.py --demo                   # make demo: the random split, no fine-tuning
    python experiments.py --data-dir ../shared/data/crossfit --model <T5 folder> --splits cls --allow-missing
"""
import argparse
import json
import shlex
import time
from pathlib import Path

import beyond
import data
import train
import world
from jobs import Cell, Job, Plan, heldout_label, seeded

SPLITS = ("random", "non-cls", "cls")                 # the paper's Fig. 3 order: (a, b), (c, d), (e, f)
RESAMPLED_SEED = 21                                   # T_train^diff: another of CrossFit's K-shot samples
TWO_K = 32                                            # Fig. 6: CrossFit's 2K-shot files, <task>_32_<seed>_*.tsv


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
        cfg = train.parse_args(argv)
        return Job(argv, train.stages.stage_dir(cfg), train.planned_tasks(cfg, tasks)[0])

    p = Plan(meta={"splits": splits, "dims": args.dims, "planted": args.planted, "source": args.source,
                   "pca_dim": args.pca_dim,
                   "split_dims": {**{s: args.split_dims[s] for s in splits}, "cls-2K": args.split_dims["cls"]},
                   "tasks_file": args.tasks_file})
    lr = ["--lr", args.pt_lr] if args.pt_lr else []
    p.untuned = p.add(job(run, run / "splits" / "all.txt", "--stage", "untuned", "--tasks-from", "all"))
    p.pt = p.add(job(run, run / "splits" / "all.txt", "--stage", "pt", "--tasks-from", "all", "--steps", args.pt_steps, *lr))
    if args.ft:
        p.ft = p.add(job(run, run / "splits" / "all.txt", "--stage", "ft", "--tasks-from", "all", "--steps", args.ft_steps))
    p.meta["rank"] = train.parse_args(p.pt.argv).eval == "both"     # every stage also scored by rank classification
    store = ["--prompt-store", str(run / "prompts-s100")]
    on_heldout = lambda folder, *extra: p.add(job(folder, run / "splits" / "heldout.txt", *extra, "--tasks-from", "test"))
    for d in args.dims:
        # split-free baselines on every held-out task: the random subspace (one draw of Proj_b per seed) and DID
        draws = [on_heldout(run / "random-subspace", "--stage", "ist", "--subspace", "random", "--intrinsic-dim", d,
                            "--steps", args.ist_steps, *seeded(i)) for i in range(args.random_draws)]
        did = on_heldout(run / "did", "--stage", "did", "--intrinsic-dim", d, "--steps", args.ist_steps) \
            if d in args.did_dims else None
        for s, sections in splits.items():
            if d not in args.split_dims[s]:
                continue
            held = [sec for sec in sections if sec != "train"]
            where = (run / s, split_path(args, s))
            msf, rec, same, diff = [], [], [], []
            for i in range(args.msf_draws):         # draw i of the subspace: MSF under seed 42 + i, and its users
                drawn = seeded(i, "--msf-seed")
                msf.append(p.add(job(*where, "--stage", "msf", "--intrinsic-dim", d, "--steps", args.msf_steps,
                                     *store, *seeded(i))))
                rec.append(p.add(job(*where, "--stage", "reconstruct", "--intrinsic-dim", d, *store, *drawn)))
                same.append(p.add(job(*where, "--stage", "ist", "--intrinsic-dim", d, "--steps", args.ist_steps,
                                      "--tasks-from", ",".join(["train", *held]), *drawn)))
                if args.resampled:
                    diff.append(p.add(job(*where, "--stage", "ist", "--intrinsic-dim", d, "--steps", args.ist_steps,
                                          "--data-seed", RESAMPLED_SEED, "--tasks-from", "train", *drawn)))
            p.cells += [Cell(s, "T_train(MSF)", d, msf, sections["train"]),
                        Cell(s, "T_train^same(IST)", d, same, sections["train"])]
            if args.linear:                 # beyond the paper: IST through the PT prompts' linear span (linear.py)
                beyond.plan_linear(p, args, job, where, d, s, sections, store)
            if args.mpt:                    # beyond the paper: MPT's shared prompt, u and v (mpt.py)
                beyond.plan_mpt(p, args, job, where, d, s, sections, store)
            p.cells += [Cell(s, "T_train^diff(IST)", d, diff, sections["train"])] if diff else []
            for sec in held:
                p.cells += [Cell(s, heldout_label(sec, "MSF"), d, rec, sections[sec]),
                            Cell(s, heldout_label(sec, "IST"), d, same, sections[sec]),
                            Cell(s, heldout_label(sec, "random"), d, draws, sections[sec])]
                p.cells += [Cell(s, heldout_label(sec, "DID"), d, [did], sections[sec])] if did else []
    if args.ablations and "random" in splits:
        if args.fractions:
            plan_fractions(p, args, job, tasks, store)
        plan_stability(p, args, job, splits["random"]["test"], lr)
    if args.ablations and "cls" in splits:
        plan_shots(p, args, job, splits["cls"]["train"], lr)
    return p


def plan_fractions(p, args, job, tasks, store):
    """Fig. 5: MSF on 20 … 80 % of the random split's training tasks (nested split files), IST on the
    same held-out tasks. The 100 % point is the random split's own cells."""
    for pct in args.fractions:
        name = f"random_{pct}"
        sections = data.load_split(split_path(args, name), tasks)
        where = (Path(args.run) / name, split_path(args, name))
        for d in args.fraction_dims:
            msf = p.add(job(*where, "--stage", "msf", "--intrinsic-dim", d, "--steps", args.msf_steps, *store))
            ist = p.add(job(*where, "--stage", "ist", "--intrinsic-dim", d, "--steps", args.ist_steps, "--tasks-from", "test"))
            p.cells += [Cell(name, "T_train(MSF)", d, [msf], sections["train"]),
                        Cell(name, "T_test(IST)", d, [ist], sections["test"])]
    p.meta["fractions"] = {"percent": args.fractions, "dims": args.fraction_dims}


def plan_shots(p, args, job, cls_train, lr):
    """Fig. 6: the cls split's PT -> MSF -> IST again on 2K-shot files (<task>_32_<seed>_*.tsv), E_rel^PT
    against the PT of its own shot count (the two curves have different denominators, as in the paper)."""
    missing = data.missing_tasks(args.data_dir, cls_train, TWO_K, 100)
    if len(missing) == len(cls_train) or (missing and not args.allow_missing):
        p.meta["shots"] = (f"not run: {len(missing)} of the cls split's {len(cls_train)} training tasks have no "
                           f"{TWO_K}-shot files (<task>_{TWO_K}_100_*.tsv) in {args.data_dir}")
        return
    where, k = (Path(args.run) / "cls-2K", split_path(args, "cls")), ["--k", TWO_K]
    pt = p.add(job(*where, "--stage", "pt", "--tasks-from", "train", "--steps", args.pt_steps, *lr, *k))
    for d in args.split_dims["cls"]:
        msf = p.add(job(*where, "--stage", "msf", "--intrinsic-dim", d, "--steps", args.msf_steps, *k))
        ist = p.add(job(*where, "--stage", "ist", "--intrinsic-dim", d, "--steps", args.ist_steps, "--tasks-from", "train", *k))
        p.cells += [Cell("cls-2K", "T_train(MSF)", d, [msf], cls_train, ref=pt),
                    Cell("cls-2K", "T_train^same(IST)", d, [ist], cls_train, ref=pt)]
    p.meta["shots"] = f"K = 16 and 2K = {TWO_K} shots"


def plan_stability(p, args, job, heldout, lr):
    """Table 4: R runs (seeds 42, 43, …: initialisation and batch order; the data stay) of fine-tuning,
    PT, IST at one d_I and stage two (PT started from each IST run's Proj_b(z), §4.3) on the random
    split's held-out tasks. Seed 42's PT and FT are the plan's own: a task's run does not depend on the
    tasks beside it (per-task clipping, elementwise Adam, per-task batch order)."""
    run, split, d = Path(args.run), split_path(args, "random"), args.stability_dim
    for i in range(args.runs):
        pt = p.pt if i == 0 else p.add(job(run / "stability", split, "--stage", "pt", "--tasks-from", "test",
                                           "--steps", args.pt_steps, *lr, *seeded(i)))
        ft = p.ft if i == 0 else p.add(job(run / "stability", split, "--stage", "ft", "--tasks-from", "test",
                                           "--steps", args.ft_steps, *seeded(i))) if args.ft else None
        ist = p.add(job(run / "random", split, "--stage", "ist", "--intrinsic-dim", d, "--steps", args.ist_steps,
                        "--tasks-from", "test", *seeded(i)))
        two = p.add(job(run / "stage-two", split, "--stage", "pt", "--init-from-ist", ist.folder, "--tasks-from", "test",
                        "--steps", args.pt_steps, *lr, *seeded(i)))
        for method, j in (("FT", ft), ("PT", pt), (f"IST (d_I = {d})", ist), ("stage two: PT from IST", two)):
            if j:
                p.stability.setdefault(method, []).append(j)
        if args.transfer:                   # beyond the paper: SPoT's starts beside stage two's (transfer.py)
            beyond.plan_transfer(p, args, job, (run / "transfer", split), ist, [*lr, *seeded(i)])
    p.meta["stability"] = {"tasks": heldout, "dim": d, "runs": args.runs}


def split_path(args, name):
    """A split name of the data's own splits/ folder (the world has one), else of the project's."""
    own = Path(args.splits_dir) / f"{name}.txt" if args.splits_dir else None
    return str(own) if own and own.is_file() else name


def execute(p, stop_after=0.0):
    """Run every job of the plan that has not finished, in order; with stop_after (minutes), start
    none after that long (one still running finishes, or a kill leaves its checkpoint to resume)."""
    todo = [j for j in p.jobs if not j.done()]
    print(f"{len(p.jobs)} stages planned, {len(p.jobs) - len(todo)} already finished")
    began = time.time()
    for i, job in enumerate(todo, 1):
        if stop_after and time.time() - began > 60 * stop_after:
            print(f"stopped after {stop_after:g} min: {len(todo) - i + 1} stages left; run the same command again "
                  "to go on", flush=True)
            return
        print(f"[{i}/{len(todo)}] {job.command()}", flush=True)
        started = time.time()
        train.main(job.argv)
        print(f"[{i}/{len(todo)}] done in {time.time() - started:.1f} s", flush=True)


# make real: the paper on the real CrossFit tasks with SmolLM2-135M: PT and the untuned model of every
# task with data; every split over the d_I sweep 1, 3, 5, 10, 25 (MSF, reconstruction, IST on seen and
# held-out tasks, the random subspace, and beyond the paper PCA, MPT); Table 4 on the random split's
# held-out tasks (PT, IST at d_I = 10, stage two, SPoT) under 3 seeds; Fig. 4 from the real z. No Fig. 5
# (--fractions), no fine-tuning or DID (a 135M model per task). Every stage also scores its test sets by
# rank classification (--eval both): the instruct model answers in sentences. `--stop-after` cuts it
# into pieces that fit a device command; `--splits cls-small --dims 1,3,5` runs on a CPU. A decoder-only
# model's embeddings are small (|e| ~ 1, T5's ~ 10^2), so PT steps at 0.03 from sampled vocabulary.
REAL = {"data_dir": str(data.HERE.parent / "shared" / "data" / "crossfit"), "model": "smollm2", "run": "runs/smollm2",
        "splits": "random,non-cls,cls", "dims": "1,3,5,10,25", "prompt_len": 20, "eval_every": 50, "ft": False,
        "allow_missing": True, "pt_lr": 0.03, "fractions": "none", "did_dims": "none"}
REAL_TRAIN_ARGS = ("--max-input-len 128 --max-target-len 16 --max-test 200 --eval-batch-size 128 --prompt-init vocab "
                   "--eval both")


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="", help="output folder (default runs/paper, or runs/demo with --demo)")
    p.add_argument("--data-dir", default="", help="CrossFit-layout folder; empty: the offline world (built if needed)")
    p.add_argument("--tasks-file", default="", help="task table (default: the world's, or tasks.txt)")
    p.add_argument("--splits-dir", default="", help="folder of split files (default: the world's, or splits/)")
    p.add_argument("--model", default="", help="T5 name or folder (default: the world's model)")
    p.add_argument("--world-seed", type=int, default=0, help="another draw of the offline world (world.py --seed)")
    world.add_variant_argument(p)
    p.add_argument("--splits", default=",".join(SPLITS), help="comma-separated: random, non-cls, cls")
    p.add_argument("--dims", default="", help="the d_I sweep (default 1,2,3,4,5,6,8 on the world; 1,5,10,25,50,100 on real data)")
    p.add_argument("--split-dims", action="append", default=[], metavar="SPLIT=D,D,…",
                   help="a split's own d_I, of the sweep, instead of all of it (repeatable; tests/test_paper.py "
                        "sweeps each split around its planted dimension)")
    p.add_argument("--prompt-len", type=int, default=0, help="P (default: the world's 4; 100 on real data)")
    p.add_argument("--batch-size", type=int, default=4, help="rows per task per step")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--pt-steps", type=int, default=300)
    p.add_argument("--pt-lr", type=float, default=0.0, help="PT's learning rate; 0: train.py's")
    p.add_argument("--ft-steps", type=int, default=300)
    p.add_argument("--msf-steps", type=int, default=200)
    p.add_argument("--ist-steps", type=int, default=150)
    p.add_argument("--resampled", action=argparse.BooleanOptionalAction, default=True,
                   help="T_train^diff(IST): IST on another K-shot sample of the training tasks")
    p.add_argument("--ft", action=argparse.BooleanOptionalAction, default=True, help="fine-tuning baseline (E_rel^FT)")
    p.add_argument("--linear", action=argparse.BooleanOptionalAction, default=True,
                   help="beyond the paper: IST through the linear span of the training prompts (--subspace pca)")
    p.add_argument("--mpt", action=argparse.BooleanOptionalAction, default=True,
                   help="beyond the paper: MPT (a shared prompt, rank-one u vᵀ per task) on every split")
    p.add_argument("--transfer", action=argparse.BooleanOptionalAction, default=True,
                   help="beyond the paper: Table 4's SPoT rows, PT from the mean or the nearest training prompt")
    p.add_argument("--random-draws", type=int, default=0, help="draws of the random subspace's Proj_b, averaged "
                                                                "(default 3; 1 in the demo)")
    p.add_argument("--msf-draws", type=int, default=1, help="draws of the MSF subspace (seeds 42, 43, …), each "
                                                              "with its own IST and reconstruction; cells average them")
    p.add_argument("--did-dims", default="", help="d of the DID baseline, of the sweep (default: the planted d* and "
                                                   "the largest on the world, 10 on real data); none: no DID")
    p.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=True,
                   help="§4.3: Fig. 5 (number of training tasks), Fig. 6 (K vs 2K shots), Table 4 (stability)")
    p.add_argument("--fractions", default="", help="Fig. 5: percentages of the random split's training tasks, one "
                                                   "random_<n> split file each (default 25,50,75 on the world, 20,40,60,80 on real data); "
                                                   "none: no Fig. 5")
    p.add_argument("--fraction-dims", default="", help="Fig. 5's two d_I, of the sweep (default as --did-dims)")
    p.add_argument("--runs", type=int, default=3, help="Table 4: runs under seeds 42, 43, … (the paper: 10)")
    p.add_argument("--stability-dim", type=int, default=0, help="Table 4's IST d_I, of the sweep (default: the random "
                                                                 "split's planted d on the world, 10 on real data, as the paper)")
    p.add_argument("--pca-dim", type=int, default=0, help="Fig. 4's d_I, of the sweep (default: the random split's "
                                                          "planted d on the world, where the two components drawn "
                                                          "separate the kinds; 10 on real data)")
    p.add_argument("--allow-missing", action="store_true", help="train on the tasks present (real data)")
    p.add_argument("--train-args", default="", help="more train.py options for every stage, quoted")
    p.add_argument("--demo", action="store_true", help="the README's demo: random split only, no fine-tuning, "
                                                       "DID or §4.3")
    p.add_argument("--real", action="store_true", help="make real: the real CrossFit tasks with SmolLM2 "
                                                       "(defaults in REAL; any option above overrides them)")
    p.add_argument("--report-only", action="store_true", help="run nothing: write the report of what has finished")
    p.add_argument("--stop-after", type=float, default=0.0, help="minutes: start no stage after this long, write the "
                                                                 "report and stop (the same command goes on; a device "
                                                                 "session's pieces); 0: run everything")
    return p


def parse_args(argv=None):
    """The options, then what they leave to defaults: a preset's (--real, --demo), the data's
    (the world, or a folder), and the d_I of each split and analysis, each checked."""
    p = parser()
    args = p.parse_args(argv)
    presets(args, p)
    world_cfg = source(args, p)
    sweep(args, p)
    if world_cfg:                            # the world: built after every check (minutes when it pretrains)
        root = world.build(world_cfg)
        args.source += f"; its model {json.loads((root / 'world.json').read_text())['pretraining'].get('weights', '')}"
    return args


def presets(args, p):
    """--real and --demo: their defaults, for every option the command line left alone."""
    if args.real:
        given = p.parse_args([]).__dict__
        for name, value in REAL.items():
            if getattr(args, name) == given[name]:
                setattr(args, name, value)
        args.train_args = f"{REAL_TRAIN_ARGS} {args.train_args}"           # later options win in argparse
    if args.demo:
        args.splits, args.ft, args.ablations, args.run = "random", False, False, args.run or "runs/demo"
        args.linear = args.mpt = args.transfer = False
        # ≤ 15 min from a fresh clone on 2 cores: no DID (a fresh PLM per task), one draw of the
        # random subspace, four d_I around the random split's planted 4 (README: the times)
        args.did_dims = args.did_dims or "none"
        args.random_draws = args.random_draws or 1
        args.dims = args.dims or "2,3,4,6"
    args.run = args.run or "runs/paper"
    args.random_draws = args.random_draws or 3
    args.splits = [s for s in args.splits.split(",") if s]


def source(args, p):
    """A data folder and model given, or the offline world's and what it plants. -> the world's
    WorldConfig (parse_args builds it), or None."""
    if args.data_dir:
        if args.world_seed or args.world:
            p.error("--world-seed and --world shape the offline world: with --data-dir there is no offline world")
        args.source, args.planted = f"{args.data_dir} with {args.model}", {}
        args.tasks_file = args.tasks_file or str(data.HERE / "tasks.txt")
        args.dims = args.dims or "1,5,10,25,50,100"
        args.prompt_len = args.prompt_len or 100
        if not args.model:
            p.error("--model is needed with --data-dir (a T5 name or folder)")
        return None
    cfg = world.variant_config(p, args.world, args.world_seed)
    root = world.folder(cfg)
    args.data_dir, args.model = str(root / "data"), args.model or str(root / "model")
    args.tasks_file, args.splits_dir = str(root / "tasks.txt"), args.splits_dir or str(root / "splits")
    args.source = f"the offline world (seed {cfg.seed}; d* = {cfg.dim} per kind{''.join('; ' + w for w in args.world)})"
    # see world.py: a kind's d*; the random split also needs the kind, one direction more
    args.planted = {"random": cfg.dim + 1, "cls": cfg.dim, "non-cls": cfg.dim}
    args.dims = args.dims or "1,2,3,4,5,6,8"
    args.prompt_len = args.prompt_len or cfg.prompt_len
    return cfg


def sweep(args, p):
    """The d_I sweep, each split's part of it, and the analyses' d_I, all from the random split's."""
    numbers = lambda flag, text: [int(x) for x in text.split(",")] if all(
        x.strip().isdigit() for x in text.split(",")) else p.error(f"{flag} takes comma-separated whole numbers, got {text!r}")
    args.dims = numbers("--dims", args.dims)
    own = dict(x.partition("=")[::2] for x in args.split_dims)
    if not set(own) <= set(SPLITS):
        p.error(f"--split-dims takes SPLIT=D,D,… with SPLIT one of {', '.join(SPLITS)}; got {sorted(set(own) - set(SPLITS))}")
    args.split_dims = {s: numbers("--split-dims", own[s]) if s in own else args.dims    # every split named
                       for s in dict.fromkeys([*SPLITS, *args.splits])}                  # (cls-small too)
    if any(set(ds) - set(args.dims) for ds in args.split_dims.values()):
        p.error(f"--split-dims must be of the d_I sweep --dims {args.dims}")
    if min(args.random_draws, args.runs, args.msf_draws) < 1:
        p.error("--random-draws, --msf-draws and --runs take 1 or more")
    # the ablations' d_I come from the random split's sweep, so that every curve shares its points with Fig. 3
    random_dims = args.split_dims["random"]
    wanted = (args.planted["random"], max(args.dims)) if args.planted else (5, 10)
    pick = lambda flag, given, default: sorted(set(numbers(flag, given)) if given else
                                               {d for d in default if d in random_dims} or {max(random_dims)})
    args.did_dims = [] if args.did_dims == "none" else pick("--did-dims", args.did_dims, wanted if args.planted else (10,))
    args.fraction_dims = pick("--fraction-dims", args.fraction_dims, wanted)
    one = pick("", "", (args.planted["random"],) if args.planted else (10,))[0]
    args.stability_dim, args.pca_dim = args.stability_dim or one, args.pca_dim or one
    args.fractions = [] if args.fractions == "none" else \
        numbers("--fractions", args.fractions or ("20,40,60,80" if not args.planted else "25,50,75"))
    off = sorted({*args.did_dims, *args.fraction_dims, args.stability_dim, args.pca_dim} - set(random_dims))
    if off:
        p.error(f"--did-dims, --fraction-dims, --stability-dim and --pca-dim must be of the random split's d_I "
                f"{random_dims}: {off} is not")


def main(argv=None):
    import report
    args = parse_args(argv)
    started = time.time()
    p = plan(args)
    if not args.report_only:
        execute(p, args.stop_after)
    return report.write(p, Path(args.run), None if args.report_only else time.time() - started)


if __name__ == "__main__":
    main()
