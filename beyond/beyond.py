"""
The plan's comparisons beyond the paper (paper/experiments.py calls these as it plans each split and each
of Table 4's runs): the stages they add and the cells the report draws from them.

  linear    <split>/ist-pca-d<d>-…/          IST through the training prompts' linear span (prompt_subspaces.py)
  MPT       <split>/mpt/, <split>/ist-mpt-…/  a shared prompt learnt on the training tasks, then each
                                              held-out task's u, v (prompt_subspaces.py): P + H numbers a task, one
                                              value drawn at every d_I of the sweep
  transfer  transfer/pt-transfer-{mean,nearest}-…/   Table 4: PT started from the training prompts'
                                              mean, or from the nearest training task's prompt (SPoT,
                                              prompt_subspaces.py), beside stage two, under the same seeds
"""
from pathlib import Path

from runner.jobs import Cell, heldout_label


def held_sections(sections):
    return [sec for sec in sections if sec != "train"]


def plan_linear(p, args, job, where, d, split, sections, store):
    """IST through P̄ + U z on the split's training and held-out tasks, at d_I = d; not planned where d
    exceeds the split's training prompts (the report names where)."""
    held = held_sections(sections)
    pca = job(*where, "--stage", "ist", "--subspace", "pca", "--intrinsic-dim", d, "--steps", args.ist_steps,
              "--tasks-from", ",".join(["train", *held]), *store)
    prompts = sum(t in pca.tasks for t in sections["train"])          # the training tasks with data
    if d > prompts:                                                  # K prompts span at most K directions
        p.meta.setdefault("linear_skipped", []).append(f"{split} at d_I = {d} (its {prompts} training prompts)")
        return
    p.add(pca)
    p.cells += [Cell(split, "T_train^same(PCA)", d, [pca], sections["train"])]
    p.cells += [Cell(split, heldout_label(sec, "PCA"), d, [pca], sections[sec]) for sec in held]


def plan_mpt(p, args, job, where, d, split, sections, store):
    """MPT's source on the training tasks (P*, u, v) and its target on the held-out ones (u, v); the
    same two runs give the cells at every d_I (their size is P + H, not d_I)."""
    held = held_sections(sections)
    lr = ["--lr", args.pt_lr] if args.pt_lr else []
    source = p.add(job(*where, "--stage", "mpt", "--steps", args.pt_steps, *lr, *store))
    target = p.add(job(*where, "--stage", "ist", "--subspace", "mpt", "--steps", args.ist_steps,
                       "--tasks-from", ",".join(held)))
    p.cells += [Cell(split, "T_train(MPT)", d, [source], sections["train"])]
    p.cells += [Cell(split, heldout_label(sec, "MPT"), d, [target], sections[sec]) for sec in held]


TRANSFER = {"mean": "SPoT: PT from the mean prompt", "nearest": "SPoT: PT from the nearest task's prompt"}


def plan_transfer(p, args, job, where, ist, extra):
    """Table 4's SPoT rows for one run (its seed in `extra`): PT of the held-out tasks from the random
    split's training prompts' mean, and from the nearest one's by that run's IST z (as stage two's)."""
    sources = ["--transfer-from", str(Path(args.run) / "prompts-s100")]   # it writes its own to <where>/prompts-…
    for mode, method in TRANSFER.items():
        similar = ["--similar-by", ist.folder] if mode == "nearest" else []
        run = p.add(job(*where, "--stage", "pt", "--transfer", mode, *similar, "--tasks-from", "test",
                        "--steps", args.pt_steps, *sources, *extra))
        p.stability.setdefault(method, []).append(run)
