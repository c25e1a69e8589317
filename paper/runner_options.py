"""The runner's options (paper/experiments.py): each checked, in the order a user would fix them, before a
world is built, a file read or a stage planned; then what they leave to defaults (a preset's, the
data's) and the d_I of each split and analysis."""
import argparse
import json
import shlex
from pathlib import Path

import cli
import config
import data
import plm
from world import world

SPLITS = ("random", "non-cls", "cls")                 # the paper's Fig. 3 order: (a, b), (c, d), (e, f)


# make real: the paper on the real CrossFit tasks with SmolLM2-135M: PT and the untuned model of every
# task with data; every split over the d_I sweep 1, 3, 5, 10, 25 (MSF, reconstruction, IST on seen and
# held-out tasks, the random subspace, and beyond the paper PCA, MPT); Table 4 on the random split's
# held-out tasks (PT, IST at d_I = 10, stage two, SPoT) under 3 seeds; Fig. 4 from the real z. No Fig. 5
# (--fractions), no fine-tuning or DID (a 135M model per task). Every stage also scores its test sets by
# rank classification (--eval both): the instruct model answers in sentences. `--stop-after` cuts it
# into pieces that fit a device command; `--splits cls-small --dims 1,3,5` runs on a CPU. A decoder-only
# model's embeddings are small (|e| ~ 1, T5's ~ 10^2), so PT steps at 0.03 from sampled vocabulary. The LoRA
# study (beyond/lora_study.py) runs beside it on every split: a LoRA on q_proj, v_proj of each task, MSF and IST over them.
REAL = {"data_dir": str(data.HERE.parent / "shared" / "data" / "crossfit"), "model": "smollm2", "run": "runs/smollm2",
        "splits": "random,non-cls,cls", "dims": "1,3,5,10,25", "prompt_len": 20, "eval_every": 50, "ft": False,
        "allow_missing": True, "pt_lr": 0.03, "fractions": "none", "did_dims": "none", "lora": True}
REAL_TRAIN_ARGS = ("--max-input-len 128 --max-target-len 16 --max-test 200 --eval-batch-size 128 --prompt-init vocab "
                   "--eval both")


def parser(description=""):
    p = cli.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="", help="output folder (default runs/paper, or runs/demo with --demo)")
    p.add_argument("--data-dir", default="", help="CrossFit-layout folder; empty: the offline world (built if needed)")
    p.add_argument("--tasks-file", default="", help="task table (default: the world's, or tasks.txt)")
    p.add_argument("--splits-dir", default="", help="folder of split files (default: the world's, or splits/)")
    p.add_argument("--model", default="", help="T5 name or folder (default: the world's model)")
    p.add_argument("--world-seed", type=int, default=0, help="another draw of the offline world (world/world.py --seed)")
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
                                                   "random_<n> split file each (default 5,25,50,75 on the world, 20,40,60,80 on real data); "
                                                   "none: no Fig. 5")
    p.add_argument("--fraction-dims", default="", help="Fig. 5's two d_I, of the sweep (default as --did-dims)")
    p.add_argument("--runs", type=int, default=3, help="Table 4: runs under seeds 42, 43, … (the paper: 10)")
    p.add_argument("--stability-dim", type=int, default=0, help="Table 4's IST d_I, of the sweep (default: the random "
                                                                 "split's planted d on the world, 10 on real data, as the paper)")
    p.add_argument("--pca-dim", type=int, default=0, help="Fig. 4's d_I, of the sweep (default: the random split's "
                                                          "planted d on the world, where the two components drawn "
                                                          "separate the kinds; 10 on real data)")
    p.add_argument("--lora", action="store_true", help="beyond the paper: the LoRA study (beyond/lora_study.py): LoRA-PT, "
                                                       "MSF and IST over LoRAs and their baselines (make lora)")
    p.add_argument("--lora-splits", default="", help="the LoRA study's splits, of --splits (default: all of them)")
    p.add_argument("--lora-dims", default="", help="the LoRA study's d_I, of the sweep (default: all of it)")
    p.add_argument("--allow-missing", action="store_true", help="train on the tasks present (real data)")
    p.add_argument("--train-args", default="", help="more train.py options for every stage, quoted")
    p.add_argument("--demo", action="store_true", help="the README's demo: random split only, no fine-tuning, "
                                                       "DID or §4.3")
    p.add_argument("--real", action="store_true", help="make real: the real CrossFit tasks with SmolLM2 "
                                                       "(defaults in REAL; any option above overrides them)")
    p.add_argument("--report-only", action="store_true", help="run nothing: write the report of what has finished")
    p.add_argument("--pieces", type=float, default=0.0, help="minutes: print the stages left in pieces of at most this "
                                                              "many projected minutes, and run nothing (paper/pieces.py)")
    p.add_argument("--pieces-on", default="cuda", choices=("cuda", "cpu"), help="--pieces: the device they are projected on")
    p.add_argument("--stop-after", type=float, default=0.0, help="minutes: start no stage after this long, write the "
                                                                 "report and stop (the same command goes on; a device "
                                                                 "session's pieces); 0: run everything")
    return p


def parse_args(argv=None, description=""):
    """The options, then what they leave to defaults: a preset's (--real, --demo), the data's
    (the world, or a folder), and the d_I of each split and analysis, each checked."""
    p = parser(description)
    args = p.parse_args(argv)
    check(args, p)
    presets(args, p)
    world_cfg = source(args, p)
    sweep(args, p)
    cli.checked()
    if world_cfg:                            # the world: built after every check (minutes when it pretrains)
        root = world.build(world_cfg)
        args.source += f"; its model {json.loads((root / 'world.json').read_text())['pretraining'].get('weights', '')}"
    return args


def check(args, p):
    """Every option as given, before any default is filled in or anything is read: numbers, then
    names, then paths, then the options passed on to train.py."""
    cli.at_least(p, args, {"--pt-steps": 1, "--ft-steps": 1, "--msf-steps": 1, "--ist-steps": 1, "--batch-size": 1,
                           "--eval-every": 1, "--runs": 1, "--msf-draws": 1, "--random-draws": 0, "--prompt-len": 0,
                           "--world-seed": 0, "--stability-dim": 0, "--pca-dim": 0, "--pt-lr": 0, "--stop-after": 0,
                           "--pieces": 0})
    for flag, text in (("--dims", args.dims), ("--did-dims", args.did_dims), ("--fraction-dims", args.fraction_dims),
                       ("--fractions", args.fractions)):
        if text and text != "none" and not all(x.strip().isdigit() and int(x) >= 1 for x in text.split(",")):
            p.error(f"{flag} takes comma-separated whole numbers ≥ 1{', or none' if flag != '--dims' else ''}, "
                    f"got {text!r}")
    if args.fractions and args.fractions != "none" and max(map(int, args.fractions.split(","))) >= 100:
        p.error(f"--fractions takes percentages below 100 of the random split's training tasks, got {args.fractions!r}")
    known = sorted({*SPLITS, *(f.stem for f in (Path(args.splits_dir) if args.splits_dir else data.HERE / "splits")
                               .glob("*.txt"))} if args.data_dir or args.real else SPLITS)
    unknown = [s for s in args.splits.split(",") if s.strip() not in known]
    if unknown or not args.splits.strip(","):
        p.error(f"--splits takes comma-separated split names of {', '.join(known)}; got {args.splits!r}")
    if args.data_dir and (args.world_seed or args.world):
        p.error("--world-seed and --world shape the offline world: with --data-dir there is no offline world")
    try:
        if args.data_dir:
            data.require_data_dir(args.data_dir)
        if args.splits_dir:
            cli.folder_option("--splits-dir", args.splits_dir)
        if args.tasks_file:
            cli.file_option("--tasks-file", args.tasks_file)
        if args.model:
            plm.model_path(args.model)
        cli.folder_option("--run", args.run or "runs", must_exist=False, writable=True)
    except data.UserError as e:
        p.error(str(e))
    try:
        config.parse_args(["--stage", "pt", *shlex.split(args.train_args)])
    except ValueError as e:                              # shlex: an unclosed quote
        p.error(f"--train-args {args.train_args!r}: {e}")
    except (cli.Refused, cli.OptionError) as e:
        p.error(f"--train-args {args.train_args!r}: {str(e).removeprefix('error: ')}")


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
    # see world/world.py: a kind's d*; the random split also needs the kind, one direction more
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
        numbers("--fractions", args.fractions or ("20,40,60,80" if not args.planted else ",".join(map(str, world.FRACTIONS))))
    off = sorted({*args.did_dims, *args.fraction_dims, args.stability_dim, args.pca_dim} - set(random_dims))
    if off:
        p.error(f"--did-dims, --fraction-dims, --stability-dim and --pca-dim must be of the random split's d_I "
                f"{random_dims}: {off} is not")
    args.lora_splits = args.lora_splits.split(",") if args.lora_splits else list(args.splits)
    if set(args.lora_splits) - set(args.splits):
        p.error(f"--lora-splits takes splits of --splits {','.join(args.splits)}, got {','.join(args.lora_splits)!r}")
    args.lora_dims = sorted(set(numbers("--lora-dims", args.lora_dims))) if args.lora_dims else args.dims
    if set(args.lora_dims) - set(args.dims) or min(args.lora_dims) < 1:
        p.error(f"--lora-dims must be of the d_I sweep --dims {args.dims}, got {args.lora_dims}")


