"""
What the runs found, read back from the stage folders (results.tsv, metrics.jsonl, z.safetensors)
into numbers: every cell of the paper's figures and tables (E_abs, E_rel against PT and against
fine-tuning, over how many tasks), Table 4's spread over runs, each stage's time per step, and the
analyses of the intrinsic vectors (PCA, how well they separate kinds and categories). Nothing is
kept from the runs themselves, so the report can be redrawn at any time. runner/figures.py draws these
numbers; paper/report.py writes them out.
"""
import json
import math

import torch

import checkpoint
import evaluate


def scores_of(job, column="test"):
    """{task: test score} of a finished stage folder, or None when it has not run (column: test_rank
    for --eval both's rank classification)."""
    got = job.results(column) if job else None            # one read of its files
    return got if got is not None and len(got) == len(job.tasks) else None


def numbers(p, column="test"):
    """Every cell's tasks, scores and summary, from the results files (each read once; a stage
    serves several cells). A cell of several jobs (the random subspace's draws) scores each task
    by its mean over them, and is missing until all have run. E_rel^PT is also taken over the
    tasks PT learns (PT above the untuned PLM: "E_rel_learnt"), a task PT never learns telling
    nothing of a subspace. column: test, or test_rank (--eval both's rank classification).
    -> ([row dict per cell], {"PT", "FT", "untuned": {task: score} or None})"""
    read = {}

    def results(job):
        if job.folder not in read:
            read[job.folder] = scores_of(job, column)
        return read[job.folder]

    refs = {"PT": scores_of(p.pt, column), "FT": scores_of(p.ft, column), "untuned": scores_of(p.untuned, column)}
    learnt = {t: v for t, v in refs["PT"].items() if t in refs["untuned"] and v > refs["untuned"][t]} \
        if refs["PT"] and refs["untuned"] else None
    rows = []
    for cell in p.cells:
        runs = [results(j) for j in cell.jobs]
        row = {"cell": cell, "missing": any(r is None for r in runs)}
        # Fig. 6's 2K cells divide by the PT of their own shot count and have no fine-tuning reference
        row["refs"] = {"PT": results(cell.ref), "FT": None} if cell.ref else {"PT": refs["PT"], "FT": refs["FT"]}
        if not row["missing"]:
            got = {t: sum(r[t] for r in runs) / len(runs) for t in cell.tasks if all(t in r for r in runs)}
            # every task a number leaves out is named: no result (no data, under --allow-missing), and
            # per reference those whose reference is ≤ 0 (excluded) or absent (unmatched)
            row["scores"], row["n"], row["absent"] = got, len(got), [t for t in cell.tasks if t not in got]
            for name, ref in row["refs"].items():
                s = evaluate.summarise(got, ref) if got and ref else None
                row[f"E_rel_{name}"] = s["E_rel"] if s else math.nan
                row[f"n_{name}"] = s["E_rel_tasks"] if s else 0
                row[f"left_out_{name}"] = {"excluded": s["excluded"], "unmatched": s["unmatched"]} if s else {}
            row["E_abs"] = sum(got.values()) / len(got) if got else math.nan
            s = evaluate.summarise(got, learnt) if got and learnt is not None and not cell.ref else None
            row["E_rel_learnt"], row["n_learnt"] = (s["E_rel"], s["E_rel_tasks"]) if s else (math.nan, 0)
        rows.append(row)
    return rows, refs


def challenges(rows, split):
    return list(dict.fromkeys(r["cell"].challenge for r in rows if r["cell"].split == split))


def lookup(rows, split, challenge, dim):
    """The row of one cell, or None where the plan has none (DID runs at some d_I only)."""
    return next((r for r in rows if (r["cell"].split, r["cell"].challenge, r["cell"].dim) == (split, challenge, dim)), None)


def spread(runs, tasks):
    """Table 4's stability of one method: runs = [{task: score}] under different seeds. -> (the mean
    over tasks of the standard deviation of a task's score across runs (population std, ddof 0, as
    numpy's default), {task: mean score over runs}); tasks missing from any run are left out."""
    tasks = [t for t in tasks if all(t in r for r in runs)]
    mean = {t: sum(r[t] for r in runs) / len(runs) for t in tasks}
    std = [math.sqrt(sum((r[t] - mean[t]) ** 2 for r in runs) / len(runs)) for t in tasks]
    return (sum(std) / len(std) if std else math.nan), mean


def stability(p):
    """Table 4's rows: per method its runs, the mean std over tasks, E_rel^PT of its mean scores
    against PT's mean scores, and how fast it gets there: the steps each run needs to reach the dev
    score that PT (seed 42) ends with (first evaluation at or above it; the start counts as step 0),
    averaged over the (run, task) pairs that reach it. None for a method with a missing run."""
    tasks = p.meta["stability"]["tasks"]
    pt_runs = [scores_of(j) for j in p.stability["PT"]]
    pt_mean = spread(pt_runs, tasks)[1] if all(pt_runs) else None
    target = {t: max(v for _, v in c) for t, c in dev_curves(p.stability["PT"][0]).items() if c} if pt_mean else {}
    out = {}
    for method, jobs in p.stability.items():
        runs = [scores_of(j) for j in jobs]
        if not all(runs):
            out[method] = None
            continue
        std, mean = spread(runs, tasks)
        steps = [s for j in jobs for t, s in steps_to_reach(dev_curves(j), target).items() if t in mean]
        reached = [s for s in steps if s is not None]
        out[method] = {"runs": len(runs), "tasks": len(mean), "std": std,
                       "E_rel_PT": evaluate.summarise(mean, pt_mean)["E_rel"] if pt_mean and mean else math.nan,
                       "steps": sum(reached) / len(reached) if reached else math.nan,
                       "reached": len(reached), "pairs": len(steps)}
    return out


def dev_curves(job):
    """{task: [(step, dev score)]} of every evaluation a finished stage logged (metrics.jsonl; a
    per-task stage, fine-tuning: one in each task's folder)."""
    curves = {}
    logs = [job.folder / "metrics.jsonl"] if (job.folder / "metrics.jsonl").is_file() else \
        sorted(job.folder.glob("*/metrics.jsonl"))
    for line in (line for f in logs for line in f.read_text().splitlines()):
        if line.strip():
            record = json.loads(line)
            for task, v in record.get("dev", {}).items():
                curves.setdefault(task, []).append((record["step"], v))
    return curves


def steps_to_reach(curves, target):
    """{task: the first logged step whose dev score is ≥ target[task], or None} for the tasks of both."""
    return {t: next((step for step, v in c if v >= target[t]), None) for t, c in curves.items() if t in target}


def mpt_size(p):
    """The numbers MPT tunes per held-out task, P + H (its shared prompt's shape), or None before any
    MPT source has run."""
    for job in p.jobs:
        path = job.folder / "shared_prompt.safetensors"
        if path.is_file():
            return sum(checkpoint.load(path, f"re-run: {job.command()}")[0]["shared"].shape)
    return None


def seconds_per_step(job):
    """(seconds per training step, tasks per step) averaged over a finished stage's logged records
    (a per-task stage: over all its tasks' records), or None when it has not run."""
    if not (job and job.done()):
        return None
    logs = [job.folder / "metrics.jsonl"] if (job.folder / "metrics.jsonl").is_file() else \
        sorted(job.folder.glob("*/metrics.jsonl"))
    records = [json.loads(line) for f in logs for line in f.read_text().splitlines() if line.strip()]
    records = [r for r in records if "s_per_step" in r]
    if not records:
        return None
    return (sum(r["s_per_step"] for r in records) / len(records),
            sum(r.get("active", 1) for r in records) / len(records))


def intrinsic_vectors(p):
    """z of every task IST trained on the first split (random when planned) at Fig. 4's d_I (its largest
    where that was not swept): -> (names, z (K, d_I), seen flags), or None when that IST run is missing."""
    split = next(iter(p.meta["splits"]))
    cells = [c for c in p.cells if c.split == split and c.challenge == "T_train^same(IST)"]
    cell = next((c for c in cells if c.dim == p.meta.get("pca_dim")), max(cells, key=lambda c: c.dim))
    path = cell.jobs[0].folder / "z.safetensors"
    if not path.is_file():
        return None
    z, _ = checkpoint.load(path, f"re-run: {cell.jobs[0].command()}")
    names = sorted(z)
    return names, torch.stack([z[n] for n in names]), [n in cell.tasks for n in names]


def pca2(z):
    """The first two principal components of the rows of z (K, d) -> (K, 2), and their share of variance."""
    centred = z - z.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    coords = centred @ v[:2].T
    if coords.size(1) < 2:
        coords = torch.cat([coords, torch.zeros(len(coords), 2 - coords.size(1))], 1)
    return coords, (s[:2] ** 2 / (s ** 2).sum()).tolist()


def nearest_centroid_accuracy(z, labels):
    """Leave-one-out nearest-centroid accuracy of `labels` from the rows of z: 1.0 when every
    point is nearer its own group's centre than any other's (a number for "separates"); nan with
    fewer than two groups (a split of one kind has nothing to separate)."""
    groups = sorted(set(labels))
    if len(groups) < 2:
        return math.nan
    right = 0
    for i in range(len(labels)):
        centres = {g: torch.stack([z[j] for j in range(len(labels)) if labels[j] == g and j != i]).mean(0)
                   for g in groups if sum(1 for j in range(len(labels)) if labels[j] == g and j != i)}
        right += min(centres, key=lambda g: (z[i] - centres[g]).norm().item()) == labels[i]
    return right / len(labels)


def kinds_and_categories(names, tasks):
    """Each task's kind (cls, noncls) and category (its ontology after the kind)."""
    return [tasks[n].type for n in names], [tasks[n].ontology.split("/", 1)[-1] or "?" for n in names]


def separation(names, z, tasks):
    """Leave-one-out nearest-centroid accuracy of the kinds (from z, and from the two principal
    components Fig. 4 draws), and of the categories within each kind."""
    kinds, category = kinds_and_categories(names, tasks)
    within = lambda kind: nearest_centroid_accuracy(z[[i for i, k in enumerate(kinds) if k == kind]],
                                                    [c for c, k in zip(category, kinds) if k == kind])
    return {"kind": nearest_centroid_accuracy(z, kinds), "kind_drawn": nearest_centroid_accuracy(pca2(z)[0], kinds),
            "category_cls": within("cls"), "category_noncls": within("noncls")}
