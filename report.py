"""
The report of a plan (experiments.py): the paper's Fig. 3 (E_rel against PT and against fine-tuning,
per split, over d_I), Tables 2–3 (E_abs), Fig. 4 (PCA of the intrinsic vectors z), and one TSV
with every per-task number those average. A number whose stage has not run is not guessed: its
cell says "missing" and the report lists the command that makes it.

Everything here is read from the stage folders' results.tsv and z.safetensors; nothing is kept in
memory from the runs, so `python experiments.py --report-only` redraws it at any time.
"""
import math
from pathlib import Path

import torch

import checkpoint
import data
import evaluate

STYLE = {"MSF": ("tab:blue", "o"), "IST": ("tab:red", "s"), "random": ("tab:grey", "x")}


def scores_of(job):
    """{task: test score} of a finished stage folder, or None when it has not run."""
    return evaluate.read_results(job.folder) if job and job.done() else None


def numbers(p):
    """Every cell's tasks, scores and summary, from the results files (each read once; a stage
    serves several cells). -> ([row dict per cell], {"PT", "FT", "untuned": {task: score} or None})"""
    read = {}

    def results(job):
        if job.folder not in read:
            read[job.folder] = scores_of(job)
        return read[job.folder]

    refs = {"PT": scores_of(p.pt), "FT": scores_of(p.ft), "untuned": scores_of(p.untuned)}
    rows = []
    for cell in p.cells:
        scores = results(cell.job)
        row = {"cell": cell, "missing": scores is None}
        if scores is not None:
            got = {t: scores[t] for t in cell.tasks if t in scores}
            row["scores"] = got
            row["n"] = len(got)
            for ref_name in ("PT", "FT"):
                s = evaluate.summarise(got, refs[ref_name]) if got and refs[ref_name] else None
                row[f"E_rel_{ref_name}"] = s["E_rel"] if s else math.nan
            row["E_abs"] = sum(got.values()) / len(got) if got else math.nan
        rows.append(row)
    return rows, refs


def per_task_tsv(rows, refs):
    lines = ["split\tchallenge\td_I\ttask\tscore\tpt\tft\tuntuned"]
    for row in rows:
        c = row["cell"]
        for task, score in sorted(row.get("scores", {}).items()):
            ref = "\t".join(f"{r[task]:.4f}" if r and task in r else "" for r in refs.values())
            lines.append(f"{c.split}\t{c.challenge}\t{c.dim}\t{task}\t{score:.4f}\t{ref}")
    return "\n".join(lines) + "\n"


def challenges(rows, split):
    return list(dict.fromkeys(r["cell"].challenge for r in rows if r["cell"].split == split))


def lookup(rows, split, challenge, dim):
    return next(r for r in rows if (r["cell"].split, r["cell"].challenge, r["cell"].dim) == (split, challenge, dim))


def table(rows, split, dims, key, fmt):
    """Markdown: one row per challenge, one column per d_I; each cell says over how many tasks."""
    lines = [f"| {split} | " + " | ".join(f"d_I={d}" for d in dims) + " |", "|---|" + "---:|" * len(dims)]
    for ch in challenges(rows, split):
        cells = []
        for d in dims:
            r = lookup(rows, split, ch, d)
            cells.append("missing" if r["missing"] else f"{fmt(r[key])} ({r['n']})")
        lines.append(f"| {ch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def figure3(rows, p, path):
    """Six panels as the paper's Fig. 3: one row per split, E_rel^PT left and E_rel^FT right
    (without a fine-tuning run, the left column alone).
    Colour says the method (MSF, IST, random subspace), the line which tasks: solid T_train
    (dash-dot: resampled data), dashed T_test or T_test^in, dotted T_test^out."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    splits, dims = list(p.meta["splits"]), p.meta["dims"]
    refs = ("PT", "FT") if p.ft else ("PT",)                             # no fine-tuning run: no empty panels
    fig, axes = plt.subplots(len(splits), len(refs), figsize=(6 * len(refs), 3.8 * len(splits)), squeeze=False)
    for i, split in enumerate(splits):
        for j, ref in enumerate(refs):
            ax, top = axes[i][j], 1.2
            for ch in challenges(rows, split):
                ys = [lookup(rows, split, ch, d) for d in dims]
                ys = [math.nan if r["missing"] else r[f"E_rel_{ref}"] for r in ys]
                top = max([top] + [y + 0.1 for y in ys if math.isfinite(y)])
                method = ch[ch.index("(") + 1:-1]
                colour, marker = STYLE[method]
                line = ("-." if "diff" in ch else "-" if ch.startswith("T_train") else
                        ":" if "^out" in ch else "--")
                faint = "same" in ch or ch == "T_train(MSF)"
                ax.plot(dims, ys, marker=marker, color=colour, linestyle=line, alpha=0.5 if faint else 1.0,
                        markersize=4, label=ch)
            planted = p.meta["planted"].get(split)
            if planted:
                ax.axvline(planted, color="black", linewidth=0.8, linestyle=":")
                ax.annotate(f"planted {planted}", (planted, 0.0), xycoords=("data", "axes fraction"),
                            xytext=(3, 4), textcoords="offset points", fontsize=8)   # the bottom stays empty
            ax.axhline(1.0, color="grey", linewidth=0.5)
            what = "prompt tuning" if ref == "PT" else "fine-tuning"
            ax.set(title=f"({chr(97 + len(refs) * i + j)}) {split} split: E_rel against {what}",
                   xlabel="intrinsic dimension d_I", ylabel=f"E_rel^{ref}", xticks=dims, ylim=(0, top))
            if j == len(refs) - 1:
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def intrinsic_vectors(p, dim):
    """z of every task IST trained at d_I = dim on the first split (random when planned):
    -> (names, z (K, d_I), seen flags), or None when that IST run is missing."""
    split = next(iter(p.meta["splits"]))
    cell = next(c for c in p.cells if c.split == split and c.dim == dim and c.challenge == "T_train^same(IST)")
    path = cell.job.folder / "z.safetensors"
    if not path.is_file():
        return None
    z, _ = checkpoint.load(path, f"re-run: {cell.job.command()}")
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
    """Leave-one-out nearest-centroid accuracy of the kinds, and of the categories within each kind."""
    kinds, category = kinds_and_categories(names, tasks)
    within = lambda kind: nearest_centroid_accuracy(z[[i for i, k in enumerate(kinds) if k == kind]],
                                                    [c for c, k in zip(category, kinds) if k == kind])
    return {"kind": nearest_centroid_accuracy(z, kinds), "category_cls": within("cls"),
            "category_noncls": within("noncls")}


def figure4(names, z, seen, tasks, path):
    """Fig. 4's four panels: cls vs non-cls; seen vs unseen; categories within cls; within non-cls."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    coords, share = pca2(z)
    kinds, category = kinds_and_categories(names, tasks)
    panels = [("(a) task kind", kinds, range(len(names))),
              ("(b) seen (MSF's tasks) vs unseen", ["seen" if s else "unseen" for s in seen], range(len(names))),
              ("(c) categories within cls", category, [i for i, k in enumerate(kinds) if k == "cls"]),
              ("(d) categories within non-cls", category, [i for i, k in enumerate(kinds) if k == "noncls"])]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for ax, (title, labels, idx) in zip(axes, panels):
        idx = list(idx)
        for n, label in enumerate(sorted({labels[i] for i in idx})):
            pts = [i for i in idx if labels[i] == label]
            ax.scatter(coords[pts, 0], coords[pts, 1], s=22, label=label, marker="os^vDP*X"[n % 8])
        ax.set(title=title, xlabel=f"PC1 ({100 * share[0]:.0f}% of variance)",
               ylabel=f"PC2 ({100 * share[1]:.0f}%)" if len(share) > 1 else "PC2")
        ax.legend(fontsize=7)
    fig.suptitle(f"PCA of the intrinsic vectors z found by IST (d_I = {z.size(1)}, {len(names)} tasks)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(p, out, seconds=None):
    """report.md, e_rel.png (Fig. 3), pca.png (Fig. 4) and per_task.tsv under `out`. -> summary dict."""
    out = Path(out)
    tasks = data.load_tasks(p.meta["tasks_file"])
    rows, refs = numbers(p)
    (out / "per_task.tsv").write_text(per_task_tsv(rows, refs))
    dims = p.meta["dims"]
    figure3(rows, p, out / "e_rel.png")
    lines = [f"# IPT: the paper's experiments on {p.meta['source']}", ""]
    if seconds is not None:
        lines += [f"Wall time of this invocation: {seconds / 60:.1f} min.", ""]
    lines += ["## Fig. 3: E_rel over d_I", "", "![Fig. 3](e_rel.png)", ""]
    for ref in ("PT", "FT") if p.ft else ("PT",):
        for split in p.meta["splits"]:
            lines += [f"E_rel^{ref}, {split} split (tasks in brackets):", "",
                      table(rows, split, dims, f"E_rel_{ref}", lambda v: f"{v:.2f}"), ""]
    lines += ["## Tables 2–3: E_abs (×100)", ""]
    for split in p.meta["splits"]:
        lines += [table(rows, split, dims, "E_abs", lambda v: f"{100 * v:.1f}"), ""]
    lines += ["References, E_abs of prompt tuning, fine-tuning and the PLM with no prompt on the same tasks:", "",
              reference_rows(p, refs), "", "## Prompt tuning against the untuned PLM", "", against_untuned(refs), ""]
    summary = {"rows": rows}
    vectors = intrinsic_vectors(p, max(dims))
    lines += ["## Fig. 4: PCA of the intrinsic vectors", ""]
    if vectors:
        figure4(*vectors, tasks, out / "pca.png")
        summary["pca"] = separation(vectors[0], vectors[1], tasks)
        lines += ["![Fig. 4](pca.png)", "",
                  "Leave-one-out nearest-centroid accuracy from z (1.0: every task nearer its own group's centre): "
                  "cls vs non-cls {kind}; categories within cls {category_cls}, within non-cls {category_noncls} "
                  "(n/a: fewer than two groups).".format(**{k: "n/a" if math.isnan(v) else f"{v:.2f}"
                                                          for k, v in summary["pca"].items()}), ""]
    else:
        lines += ["missing: the IST run of the first split at the largest d_I.", ""]
    missing = [j for j in p.jobs if not j.done()]
    if missing:
        lines += ["## Missing runs", "", "These stages have not finished; their cells say 'missing'. Each command makes one "
                  "(or run the whole plan again: finished stages are skipped):", ""]
        lines += [f"    {j.command()}" for j in missing] + [""]
    (out / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return summary
