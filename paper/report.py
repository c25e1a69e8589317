"""
The report of a plan (paper/experiments.py): the paper's Fig. 3 (E_rel against PT and against fine-tuning,
per split, over d_I, with the random-subspace and DID baselines), Tables 2–3 (E_abs), Fig. 4 (PCA of
the intrinsic vectors z), §4.3's Fig. 5 (number of training tasks), Fig. 6 (K vs 2K shots) and
Table 4 (stability over runs, stage two), each stage's time per step, and one TSV with every
per-task number the tables average. A number whose stage has not run is not guessed: its cell says
"missing" and the report lists the command that makes it.

Everything is read back from the stage folders (runner/results.py), so `python -m paper.experiments --report-only`
redraws it at any time.
"""
import math
from pathlib import Path

import data
from beyond import lora_study, similarity
from runner import figures, results
from runner.results import challenges, lookup
from world import numerics

def per_task_tsv(rows, refs):
    """Every per-task number a cell averages, with the references it is divided by (its own PT)."""
    lines = ["split\tchallenge\td_I\ttask\tscore\tpt\tft\tuntuned"]
    for row in rows:
        c = row["cell"]
        for task, score in sorted(row.get("scores", {}).items()):
            ref = "\t".join(f"{r[task]:.4f}" if r and task in r else ""
                            for r in (row["refs"]["PT"], row["refs"]["FT"], refs["untuned"]))
            lines.append(f"{c.split}\t{c.challenge}\t{c.dim}\t{task}\t{score:.4f}\t{ref}")
    return "\n".join(lines) + "\n"


def table(rows, split, dims, key, fmt, count):
    """Markdown: one row per challenge, one column per d_I; each cell says over how many tasks its
    own number is (`count`: E_rel leaves out tasks whose reference is ≤ 0; –: not planned at that d_I)."""
    lines = [f"| {split} | " + " | ".join(f"d_I={d}" for d in dims) + " |", "|---|" + "---:|" * len(dims)]
    for ch in challenges(rows, split):
        cells = []
        for d in dims:
            r = lookup(rows, split, ch, d)
            cells.append("–" if r is None else "missing" if r["missing"] else
                         f"{'n/a' if math.isnan(r[key]) else fmt(r[key])} ({r[count]})")
        lines.append(f"| {ch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def left_out(rows):
    """Every task a finished cell's numbers leave out, and why: no result (no data, trained under
    --allow-missing), E_rel's reference ≤ 0 (excluded: no fraction of it can be recovered), or no
    reference score (unmatched). Cells that leave out the same tasks share a line."""
    why, why_not = {}, {"excluded": "reference ≤ 0", "unmatched": "no reference"}
    for r in rows:
        if r["missing"]:
            continue
        c = r["cell"]
        reasons = [("no result", r["absent"])] + [(f"E_rel^{ref}: {why_not[kind]}", r[f"left_out_{ref}"].get(kind, []))
                                                  for ref in ("PT", "FT") for kind in why_not]
        for reason, tasks in reasons:
            if tasks:
                why.setdefault((c.split, c.challenge, reason, tuple(tasks)), []).append(c.dim)
    if not why:
        return ["Every cell's numbers are over all of its tasks.", ""]
    lines = ["Tasks left out of a cell's numbers: no result (no data, under --allow-missing), or left out of E_rel "
             "because their reference (PT or FT) scores ≤ 0 (no fraction of it to recover) or has no score:", "",
             "| split | challenge | d_I | left out | tasks |", "|---|---|---|---|---|"]
    lines += [f"| {split} | {ch} | {', '.join(map(str, dims))} | {reason} | {', '.join(tasks)} |"
              for (split, ch, reason, tasks), dims in why.items()]
    return lines + [""]


def reference_rows(p, refs):
    """E_abs of PT, FT and the untuned PLM on each split's task sets (the rows Tables 2–3 put
    beside IPT's)."""
    lines = ["| split | tasks | PT E_abs | FT E_abs | untuned (P = 0) E_abs |", "|---|---|---:|---:|---:|"]
    for split, sections in p.meta["splits"].items():
        for sec, tasks in sections.items():
            cell = lambda r: (f"{100 * sum(r[t] for t in tasks if t in r) / max(1, sum(t in r for t in tasks)):.1f} "
                              f"({sum(t in r for t in tasks)})") if r else "missing"
            lines.append(f"| {split} | {sec} | " + " | ".join(cell(refs[k]) for k in ("PT", "FT", "untuned")) + " |")
    return "\n".join(lines)


def against_untuned(refs):
    """Per task: the PLM with no prompt, and PT. Prompt tuning must beat the model it tunes."""
    pt, untuned = refs["PT"], refs["untuned"]
    if not (pt and untuned):
        return "missing: PT or the untuned run"
    tasks = sorted(set(pt) & set(untuned))
    wins = sum(pt[t] > untuned[t] for t in tasks)
    lines = [f"PT beats the untuned PLM on {wins} of {len(tasks)} tasks (E_abs ×100; ties count as not beating).", "",
             "| task | untuned (P = 0) | PT | Δ |", "|---|---:|---:|---:|"]
    lines += [f"| {t} | {100 * untuned[t]:.1f} | {100 * pt[t]:.1f} | {100 * (pt[t] - untuned[t]):+.1f} |" for t in tasks]
    return "\n".join(lines)


def costs(p, rows):
    """Time per training step (metrics.jsonl) of PT, FT, IST and DID: PT and IST train all their tasks
    in one step, FT and DID one task on a fresh PLM each (DID rebuilds every weight every step)."""
    jobs = {"PT": p.pt, "FT": p.ft}
    for c in (r["cell"] for r in rows):
        if c.challenge == "T_train^same(IST)":
            jobs.setdefault("IST", c.jobs[0])
        if "(DID)" in c.challenge:
            jobs.setdefault(f"DID, d = {c.dim}", c.jobs[0])
    lines = ["| stage | s per step | tasks per step | s per task-step |", "|---|---:|---:|---:|"]
    for name, job in jobs.items():
        got = results.seconds_per_step(job)
        lines.append(f"| {name} | " + (f"{got[0]:.3f} | {got[1]:.0f} | {got[0] / got[1]:.4f}" if got else
                                       "missing | | ") + " |")
    return "\n".join(lines)


def fractions_section(rows, p, out):
    """Fig. 5 and its table: E_rel^PT per share of training tasks."""
    pcts, dims = p.meta["fractions"]["percent"] + [100], p.meta["fractions"]["dims"]
    figures.figure5(rows, p, out / "fractions.png")
    lines = ["## Fig. 5: number of training tasks", "", "![Fig. 5](fractions.png)", "",
             "| challenge | d_I | " + " | ".join(f"{x} %" for x in pcts) + " |", "|---|---:|" + "---:|" * len(pcts)]
    for ch in ("T_test(IST)", "T_train(MSF)"):
        for d in dims:
            found = [lookup(rows, "random" if x == 100 else f"random_{x}", ch, d) for x in pcts]
            lines.append(f"| {ch} | {d} | " + " | ".join("missing" if r is None or r["missing"] else
                                                          f"{r['E_rel_PT']:.2f} ({r['n_PT']})" for r in found) + " |")
    return lines + [""]


def shots_section(rows, p, out):
    """Fig. 6 and the MSF–IST gap per d_I with K and with 2K shots."""
    if not any(r["cell"].split == "cls-2K" for r in rows):
        return ["## Fig. 6: K vs 2K shots", "", p.meta.get("shots", "not planned: the cls split is not in this run"), ""]
    figures.figure6(rows, p, out / "shots.png")
    dims = p.meta["split_dims"]["cls-2K"]
    lines = ["## Fig. 6: K vs 2K shots", "", "![Fig. 6](shots.png)", "",
             "E_rel^PT on the cls split's training tasks, each against the PT of its own shot count; gap = "
             "T_train(MSF) − T_train^same(IST):", "",
             "| shots | challenge | " + " | ".join(f"d_I={d}" for d in dims) + " |", "|---|---|" + "---:|" * len(dims)]
    for split, shots in (("cls", "K"), ("cls-2K", "2K")):
        vals = {ch: figures.curve(rows, split, ch, dims, "E_rel_PT") for ch in ("T_train(MSF)", "T_train^same(IST)")}
        vals["gap"] = [a - b for a, b in zip(*vals.values())]
        lines += [f"| {shots} | {ch} | " + " | ".join("missing" if math.isnan(v) else f"{v:.2f}" for v in vs) + " |"
                  for ch, vs in vals.items()]
    return lines + [""]


PAPER_TABLE4 = {"PT": ("4.19", "100 %"), "stage two: PT from IST": ("1.65", "103.4 %")}


def stability_section(p, st):
    """Table 4: per method the mean over tasks of the std of the test score across runs, and E_rel^PT
    of its mean scores; the paper's figures beside (§4.3: IST alone reached 59 %)."""
    meta = p.meta["stability"]
    lines = ["## Table 4: stability over runs", "",
             f"{meta['runs']} runs (seeds 42, 43, …: initialisation and batch order, same data) on the random split's "
             f"{len(meta['tasks'])} held-out tasks; IST at d_I = {meta['dim']}. std: a task's test score (×100) across "
             "runs, averaged over tasks. The paper: 10 runs, 120 tasks, d_I = 10.", "",
             "Steps to PT's best: the first evaluation (every --eval-every steps; a given start is step 0) whose dev "
             "score reaches the best dev score of PT under seed 42, averaged over the (run, task) pairs that reach it "
             "(how many in brackets). SPoT rows (beyond the paper): PT started from the training tasks' mean prompt, "
             "or from the prompt of the training task nearest by IST's z (prompt_subspaces.py).", "",
             "| method | runs | tasks | mean std ×100 | E_rel^PT | steps to PT's best | paper std | paper E_rel^PT |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for method, row in st.items():
        paper = PAPER_TABLE4.get(method, ("", "59 %" if method.startswith("IST") else ""))
        if row:
            steps = "–" if math.isnan(row["steps"]) else f"{row['steps']:.0f}"
            got = (f"{row['runs']} | {row['tasks']} | {100 * row['std']:.2f} | {row['E_rel_PT']:.2f} | "
                   f"{steps} ({row['reached']} of {row['pairs']})")
        lines.append(f"| {method} | " + (got if row else "missing | | | | ") + f" | {paper[0]} | {paper[1]} |")
    return lines + [""]


# What the world is built to show (world/world.py); `findings` prints what it does show beside it.
EXPECTED = [
    "Fig. 3: IST's knee at the planted dimension, one below it clearly lower and flat after: d* on the cls and "
    "non-cls splits, d* + 1 on the random split (θ and which kind: world inputs do not name it). A subspace of "
    "one kind fails the other (T_test^out near 0): it cannot even say which kind of answer to give.",
    "Random subspace and DID: a random d-dimensional subspace (of prompts, or of all weights) has no reason to "
    "contain a kind's planted directions: both far below IST at equal d_I.",
    "Fig. 5: fewer training tasks leave some of a kind's d* directions unspanned by the prompts MSF sees, so "
    "unseen tasks' E_rel rises with the share.",
    "Fig. 6: the paper finds the MSF–IST gap on seen tasks narrowing with 2K shots, and IST's E_rel near but "
    "not above 1 (with K shots, above: reconstructing many tasks' prompts together helps when data are few).",
    "Table 4: the paper finds PT the least stable and stage two (PT from IST's solution) far more stable, at "
    "E_rel ≥ PT's.",
]


def findings(rows, p, st=None):
    """§4.3's effects as this run measured them, one line each (n/a where a run is missing)."""
    def val(split, ch, d):
        r = lookup(rows, split, ch, d)
        return math.nan if r is None or r["missing"] else r["E_rel_PT"]
    f = lambda v: "n/a" if math.isnan(v) else f"{v:.2f}"
    split = next(iter(p.meta["splits"]))
    held = next((ch[:-5] for ch in challenges(rows, split) if ch.startswith("T_test") and ch.endswith("(IST)")), "")
    out = [f"Baselines, {split} split, {held} at d_I = {d}: IST {f(val(split, held + '(IST)', d))}, random subspace "
           f"{f(val(split, held + '(random)', d))}, DID {f(val(split, held + '(DID)', d))}."
           for d in p.meta["dims"] if lookup(rows, split, held + "(DID)", d)]
    if p.meta.get("linear_skipped"):
        out.append("Linear subspace not planned (more directions than training prompts): "
                   + "; ".join(p.meta["linear_skipped"]) + ".")
    linear = [d for d in p.meta["dims"] if lookup(rows, split, held + "(PCA)", d)]
    if linear:
        out.append(f"Linear subspace (PCA of the training prompts) against MSF's, {split} split, {held}(IST) at d_I = "
                   + ", ".join(f"{d}: {f(val(split, held + '(PCA)', d))} / {f(val(split, held + '(IST)', d))}"
                               for d in linear) + " (PCA / MSF).")
    mpt = [d for d in p.meta["dims"] if lookup(rows, split, held + "(MPT)", d)]
    if mpt:
        out.append(f"MPT ({p.meta.get('mpt_size')} numbers a task) against IST (d_I), {split} split, {held}: MPT "
                   f"{f(val(split, held + '(MPT)', mpt[0]))}; IST " + ", ".join(
                       f"{f(val(split, held + '(IST)', d))} at {d}" for d in mpt) + ".")
    if "fractions" in p.meta:
        pcts = p.meta["fractions"]["percent"]
        out += [f"Fig. 5, T_test(IST) at d_I = {d}: " + " → ".join(
                f"{f(val(f'random_{x}' if x < 100 else 'random', 'T_test(IST)', d))} ({x} %)" for x in pcts + [100]) + "."
                for d in p.meta["fractions"]["dims"]]
    if any(r["cell"].split == "cls-2K" for r in rows):
        dims = p.meta["split_dims"]["cls-2K"]
        for split, shots in (("cls", "K"), ("cls-2K", "2K")):
            gaps = [val(split, "T_train(MSF)", d) - val(split, "T_train^same(IST)", d) for d in dims]
            ist = [val(split, "T_train^same(IST)", d) for d in dims]
            out.append(f"Fig. 6, {shots} shots: MSF − IST on seen tasks " + ", ".join(map(f, gaps)) +
                       f" over d_I = {dims}; IST's best E_rel {f(max(ist))}.")
    if st:
        std = lambda m: f"{100 * st[m]['std']:.2f}" if st.get(m) else "n/a"
        rel = lambda m: f(st[m]["E_rel_PT"]) if st.get(m) else "n/a"
        ist = next(m for m in st if m.startswith("IST"))
        out.append(f"Table 4: std ×100 PT {std('PT')}, stage two {std('stage two: PT from IST')}, {ist} {std(ist)}"
                   f", FT {std('FT')}; E_rel^PT stage two {rel('stage two: PT from IST')}, IST {rel(ist)}.")
        spot = [m for m in st if m.startswith("SPoT")]
        steps = lambda m: f"{st[m]['steps']:.0f}" if st.get(m) else "n/a"
        if spot:
            out.append("SPoT against stage two (std ×100, E_rel^PT, steps to PT's best): " + "; ".join(
                f"{m.removeprefix('SPoT: ')} {std(m)}, {rel(m)}, {steps(m)}" for m in [*spot, "stage two: PT from IST"])
                + f"; PT {std('PT')}, {rel('PT')}, {steps('PT')}.")
    return out


def learnt_tables(rows, refs, p, dims):
    """E_rel^PT over the tasks PT learns (PT above the untuned PLM), beside E_rel over all: a task PT
    never learns says nothing of a subspace. One line instead where PT learns every task."""
    pt, untuned = refs["PT"], refs["untuned"]
    if not (pt and untuned):
        return ["E_rel over the tasks PT learns: missing (PT or the untuned run).", ""]
    not_learnt = sorted(t for t in pt if t in untuned and pt[t] <= untuned[t])
    if not not_learnt:
        return [f"PT beats the untuned PLM on every one of its {len(pt)} tasks: E_rel over the tasks PT learns is "
                "E_rel^PT above.", ""]
    lines = [f"E_rel^PT over the tasks PT learns (PT above the untuned PLM; left out, {len(not_learnt)}: "
             f"{', '.join(not_learnt)}):", ""]
    for split in p.meta["splits"]:
        lines += [table(rows, split, dims, "E_rel_learnt", lambda v: f"{v:.2f}", "n_learnt"), ""]
    return lines


def rank_section(p, dims):
    """--eval both: every stage's test sets scored again with the cls tasks answered by rank
    classification, so that PT against the untuned PLM and every E_rel also stand where the
    answer's format is not what is being learnt (a chat model answers in sentences)."""
    rows, refs = results.numbers(p, "test_rank")
    lines = ["## By rank classification", "", "The same runs, their test sets scored with each cls task's answer the "
             "most likely of its classes (rank classification; non-cls tasks as generated): E_rel^PT, and E_rel^PT "
             "over the tasks PT learns under this scoring.", ""]
    for split in p.meta["splits"]:
        lines += [table(rows, split, dims, "E_rel_PT", lambda v: f"{v:.2f}", "n_PT"), ""]
    lines += learnt_tables(rows, refs, p, dims)
    return lines + ["Prompt tuning against the untuned PLM, by rank classification:", "", against_untuned(refs), ""]


def similarity_section(vectors, tasks, out, summary):
    """Beyond the paper: the tasks' cosine similarity in the subspace (Fig. 4's z), as a heatmap and
    as block scores: mean within a category (or kind) minus mean across."""
    lines = ["## Task similarity in the intrinsic subspace (beyond the paper)", ""]
    if not vectors:
        return lines + ["missing: the IST run of Fig. 4.", ""]
    names, z, _ = vectors
    kinds, categories = results.kinds_and_categories(names, tasks)
    sim = similarity.cosine_matrix(z)
    similarity.draw(names, sim, kinds, categories, z.size(1), out / "similarity.png")
    score = {"category": similarity.block_score(sim, [f"{k}/{c}" for k, c in zip(kinds, categories)]),
             "kind": similarity.block_score(sim, kinds)}
    summary["similarity"] = score
    f = lambda v: "n/a" if math.isnan(v) else f"{v:.2f}"
    return lines + ["![task similarity](similarity.png)", "",
                    f"Cosine similarity of z, mean within a category minus mean across categories: "
                    f"**{f(score['category'])}**; within a kind minus across kinds: {f(score['kind'])} (0: z knows "
                    f"nothing of the task table's ontology; {len(names)} tasks, d_I = {z.size(1)}).", ""]


def write(p, out, seconds=None):
    """report.md, e_rel.png (Fig. 3), pca.png (Fig. 4), fractions.png (Fig. 5), shots.png (Fig. 6) and
    per_task.tsv under `out`. -> summary dict."""
    out = Path(out)
    tasks = data.load_tasks(p.meta["tasks_file"])
    rows, refs = results.numbers(p)
    p.meta["mpt_size"] = results.mpt_size(p)
    (out / "per_task.tsv").write_text(per_task_tsv(rows, refs))
    dims = p.meta["dims"]
    figures.figure3(rows, p, out / "e_rel.png")
    lines = [f"# IPT: the paper's experiments on {p.meta['source']}", ""]
    if seconds is not None:
        lines += [f"Wall time of this invocation: {seconds / 60:.1f} min, {numerics.state()}.", ""]
    draws = lambda kind: max((len(r["cell"].jobs) for r in rows if kind in r["cell"].challenge), default=0)
    subspaces = (f"(IST), (MSF): each task's score the mean over {draws('(IST)')} draws of the MSF subspace "
                 "(seeds 42, 43, …). " if draws("(IST)") > 1 else "")
    lines += ["## Fig. 3: E_rel over d_I", "", "![Fig. 3](e_rel.png)", "",
              f"{subspaces}(random): the random subspace, each task's score the mean over {draws('(random)')} draws "
              "of Proj_b. (DID): Aghajanyan et al.'s intrinsic dimension, d numbers projected onto every PLM weight. "
              "Beyond the paper: (PCA) IST through the training prompts' linear span (prompt_subspaces.py); (MPT) a shared prompt "
              "P* ⊙ u vᵀ, u and v tuned per task (prompt_subspaces.py): its size is P + H, not d_I, so one value at every d_I.", ""]
    for ref in ("PT", "FT") if p.ft else ("PT",):
        for split in p.meta["splits"]:
            lines += [f"E_rel^{ref}, {split} split (tasks in brackets):", "",
                      table(rows, split, dims, f"E_rel_{ref}", lambda v: f"{v:.2f}", f"n_{ref}"), ""]
    lines += learnt_tables(rows, refs, p, dims)
    lines += ["## Tables 2–3: E_abs (×100)", ""]
    for split in p.meta["splits"]:
        lines += [table(rows, split, dims, "E_abs", lambda v: f"{100 * v:.1f}", "n"), ""]
    lines += left_out(rows)
    if p.meta.get("rank"):
        lines += rank_section(p, dims)
    lines += ["References, E_abs of prompt tuning, fine-tuning and the PLM with no prompt on the same tasks:", "",
              reference_rows(p, refs), "", "## Prompt tuning against the untuned PLM", "", against_untuned(refs), "",
              "## Time per training step", "", costs(p, rows), ""]
    summary = {"rows": rows}
    vectors = results.intrinsic_vectors(p)
    lines += ["## Fig. 4: PCA of the intrinsic vectors", ""]
    if vectors:
        figures.figure4(*vectors, tasks, out / "pca.png")
        summary["pca"] = results.separation(vectors[0], vectors[1], tasks)
        lines += ["![Fig. 4](pca.png)", "",
                  "Leave-one-out nearest-centroid accuracy from z (1.0: every task nearer its own group's centre): "
                  "cls vs non-cls {kind} (in the two components drawn: {kind_drawn}); categories within cls "
                  "{category_cls}, within non-cls {category_noncls} "
                  "(n/a: fewer than two groups).".format(**{k: "n/a" if math.isnan(v) else f"{v:.2f}"
                                                          for k, v in summary["pca"].items()}), ""]
    else:
        lines += ["missing: the IST run of the first split at Fig. 4's d_I.", ""]
    lines += similarity_section(vectors, tasks, out, summary)
    if "fractions" in p.meta:
        lines += fractions_section(rows, p, out)
    if "shots" in p.meta:
        lines += shots_section(rows, p, out)
    if "lora" in p.meta:
        lines += lora_study.section(rows, p, out, p.meta["planted"])
    if p.stability:
        summary["stability"] = results.stability(p)                   # reads every run's results once
        lines += stability_section(p, summary["stability"])
    found = findings(rows, p, summary.get("stability"))
    if found:
        lines += ["## §4.3 in numbers", ""] + [f"- {line}" for line in found] + [""]
    if found and p.meta["planted"]:
        lines += ["What the world is built to show, and what the paper found:", ""] + [f"- {e}" for e in EXPECTED] + [""]
    missing = [j for j in p.jobs if not j.done()]
    if missing:
        lines += ["## Missing runs", "", "These stages have not finished; their cells say 'missing'. Each command makes one "
                  "(or run the whole plan again: finished stages are skipped):", ""]
        lines += [f"    {j.command()}" + (f"    # {note}" if (note := j.progress()) else "") for j in missing] + [""]
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return summary
