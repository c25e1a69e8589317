"""
The paper's experiments as one plan (§4.1–4.3): every train.py stage that the results need, run in
order. A finished stage is skipped and an unfinished one resumes (train.py does both), so an
interrupted `make paper` continues where it stopped. paper/report.py turns the folders into the paper's
figures and tables; a result whose stage has not run is named there with the command that makes it.

Under --run (default runs/paper):
  splits/all.txt, splits/heldout.txt   the tasks PT and FT cover; every split's held-out tasks
  untuned-s100-all/                    the PLM with no prompt (P = 0): what prompt tuning must beat
  pt-s100-all/, prompts-s100/          PT of every task: the E_rel^PT reference and MSF's inputs
  ft-s100-all/<task>/                  full fine-tuning of every task: the E_rel^FT reference
  <split>/msf-d<d>/                    per split and d_I: MSF on the split's training tasks,
  <split>/reconstruct-d<d>-…/            its reconstruction of the held-out tasks' own PT prompts,
  <split>/ist-d<d>-…/                    IST on seen tasks (same data, and resampled: seed 21) and held-out ones
  <split>/ist-pca-d<d>-…/                beyond the paper (beyond/beyond.py): IST through the PT prompts' linear span,
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

    python -m paper.experiments                          # make paper: on the offline world, all three splits
    python -m paper.experiments --demo                   # make demo: the random split, no fine-tuning
    python -m paper.experiments --data-dir ../shared/data/crossfit --model <T5 folder> --splits cls --allow-missing
"""
import shlex
import sys
import time
from pathlib import Path

from world import numerics

# before torch: the offline world's numbers pinned (world/numerics.py); a real model or real data runs as it is
numerics.pin_if_main(__name__, default=not any(a.startswith(("--data-dir", "--real")) for a in sys.argv[1:]))
import cli  # noqa: E402
import data
import train
from beyond import beyond, lora_study
from paper import pieces, runner_options
from runner.jobs import Cell, Job, Plan, heldout_label, seeded

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
            if args.linear:                 # beyond the paper: IST through the PT prompts' linear span (prompt_subspaces.py)
                beyond.plan_linear(p, args, job, where, d, s, sections, store)
            if args.mpt:                    # beyond the paper: MPT's shared prompt, u and v (prompt_subspaces.py)
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
    if args.lora:                           # beyond the paper: the LoRA study (beyond/lora_study.py)
        lora_study.plan(p, args, job, run, splits, split_path)
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
        if args.transfer:                   # beyond the paper: SPoT's starts beside stage two's (prompt_subspaces.py)
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


def parse_args(argv=None):
    return runner_options.parse_args(argv, description=__doc__)


@cli.command()
def main(argv=None):
    from paper import report
    args = parse_args(argv)
    print(numerics.state())
    started = time.time()
    p = plan(args)
    if args.pieces:
        tasks = data.load_tasks(args.tasks_file)
        todo = [(j, pieces.projected(train.parse_args(j.argv), j.tasks, tasks, args.pieces_on))
                for j in p.jobs if not j.done()]
        return pieces.report(pieces.cut(todo, args.pieces), args.pieces, args.pieces_on, sys.stdout)
    if not args.report_only:
        execute(p, args.stop_after)
    return report.write(p, Path(args.run), None if args.report_only else time.time() - started)


if __name__ == "__main__":
    main()
