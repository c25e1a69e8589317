"""
The figures of the report, drawn from runner/results.py's numbers: Fig. 3 (E_rel over d_I, per split),
Fig. 4 (PCA of the intrinsic vectors), Fig. 5 (number of training tasks), Fig. 6 (K vs 2K shots);
the studies beyond the paper draw theirs with the same helpers (beyond/).
Colour says the method, line style which tasks or which setting; every panel has a title, axis
labels and a legend, and the world's planted d* is marked.
"""
import math

import matplotlib

from runner import results

matplotlib.use("Agg")                                 # files only, no display
import matplotlib.pyplot as plt                       # noqa: E402  (after the backend is chosen)

plt.rcParams["legend.handlelength"] = 3.5             # legend lines long enough to show dashed from dotted

STYLE = {"MSF": ("tab:blue", "o"), "IST": ("tab:red", "s"), "random": ("tab:grey", "x"), "DID": ("tab:green", "^"),
         "PCA": ("tab:purple", "D"), "MPT": ("tab:orange", "v")}


def curve(rows, split, challenge, xs, key):
    """The values of one challenge at each x (NaN where missing or not planned: a gap in the line)."""
    found = [results.lookup(rows, split, challenge, x) for x in xs]
    return [math.nan if r is None or r["missing"] else r[key] for r in found]


def mark_planted(ax, d, top=False):
    """A dotted line at the planted d, labelled where the panel has room: Fig. 3's out-of-type curves
    run along the bottom, Fig. 6's curves along the top."""
    ax.axvline(d, color="black", linewidth=0.8, linestyle=":")
    ax.annotate(f"planted {d}", (d, 1.0 if top else 0.0), xycoords=("data", "axes fraction"),
                xytext=(3, -12 if top else 4), textcoords="offset points", fontsize=8)


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figure3(rows, p, path):
    """Six panels as the paper's Fig. 3: one row per split, E_rel^PT left and E_rel^FT right
    (without a fine-tuning run, the left column alone).
    Colour says the method (MSF, IST, random subspace, DID), the line which tasks: solid T_train
    (dash-dot: resampled data), dashed T_test or T_test^in, dotted T_test^out."""
    splits, dims = list(p.meta["splits"]), p.meta["dims"]
    refs = ("PT", "FT") if p.ft else ("PT",)                             # no fine-tuning run: no empty panels
    fig, axes = plt.subplots(len(splits), len(refs), figsize=(6 * len(refs), 3.8 * len(splits)), squeeze=False)
    for i, split in enumerate(splits):
        for j, ref in enumerate(refs):
            ax, top = axes[i][j], 1.2
            for ch in results.challenges(rows, split):
                ys = curve(rows, split, ch, dims, f"E_rel_{ref}")
                top = max([top] + [1.1 * y for y in ys if math.isfinite(y)])     # room for the planted label
                method = ch[ch.index("(") + 1:-1]
                colour, marker = STYLE[method]
                line = ("-." if "diff" in ch else "-" if ch.startswith("T_train") else
                        ":" if "^out" in ch else "--")
                faint = "same" in ch or ch == "T_train(MSF)"
                label = ch + (f" ({p.meta.get('mpt_size')} numbers a task; IST: d_I)" if method == "MPT" else "")
                ax.plot(dims, ys, marker=marker, color=colour, linestyle=line, alpha=0.5 if faint else 1.0,
                        markersize=4, label=label)
            if p.meta["planted"].get(split):
                mark_planted(ax, p.meta["planted"][split], top=True)
            ax.axhline(1.0, color="grey", linewidth=0.5)
            what = "prompt tuning" if ref == "PT" else "fine-tuning"
            ax.set(title=f"({chr(97 + len(refs) * i + j)}) {split} split: E_rel against {what}",
                   xlabel="intrinsic dimension d_I", ylabel=f"E_rel^{ref}", xticks=dims, ylim=(0, top))
            if j == len(refs) - 1:
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save(fig, path)


def figure4(names, z, seen, tasks, path):
    """Fig. 4's four panels: cls vs non-cls; seen vs unseen; categories within cls; within non-cls."""
    coords, share = results.pca2(z)
    kinds, category = results.kinds_and_categories(names, tasks)
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
    save(fig, path)


def figure5(rows, p, path):
    """Fig. 5: E_rel^PT against the share of the random split's training tasks MSF saw (100 %: the
    split itself); solid T_test(IST) on the unseen tasks, dashed T_train(MSF), one colour per d_I."""
    pcts = p.meta["fractions"]["percent"] + [100]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for colour, d in zip(("tab:red", "tab:purple", "tab:orange"), p.meta["fractions"]["dims"]):
        for challenge, line in (("T_test(IST)", "-"), ("T_train(MSF)", "--")):
            ys = [y for pct in pcts for y in curve(rows, "random" if pct == 100 else f"random_{pct}", challenge, [d],
                                                   "E_rel_PT")]
            ax.plot(pcts, ys, line, color=colour, marker="o", markersize=4, label=f"{challenge}, d_I = {d}")
    ax.axhline(1.0, color="grey", linewidth=0.5)
    ax.set(title="Fig. 5: number of training tasks (random split, same unseen tasks)",
           xlabel="training tasks MSF sees (% of the random split's)", ylabel="E_rel^PT", xticks=pcts, ylim=(0, None))
    ax.legend(fontsize=7)
    save(fig, path)


def figure6(rows, p, path):
    """Fig. 6: the cls split with K and with 2K shots: T_train(MSF) and T_train^same(IST) over d_I,
    each against the PT of its own shot count."""
    dims = p.meta["split_dims"]["cls-2K"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for split, line, shots in (("cls", "-", "K"), ("cls-2K", "--", "2K")):
        for challenge in ("T_train(MSF)", "T_train^same(IST)"):
            colour, marker = STYLE[challenge[challenge.index("(") + 1:-1]]
            ax.plot(dims, curve(rows, split, challenge, dims, "E_rel_PT"), line, color=colour, marker=marker,
                    markersize=4, label=f"{challenge}, {shots} shots")
    if p.meta["planted"].get("cls"):
        mark_planted(ax, p.meta["planted"]["cls"])
    ax.axhline(1.0, color="grey", linewidth=0.5)
    ax.set(title="Fig. 6: K vs 2K shots (cls split, seen tasks)", xlabel="intrinsic dimension d_I",
           ylabel="E_rel^PT (against PT with the same shots)", xticks=dims, ylim=(0, None))
    ax.legend(fontsize=7)
    save(fig, path)
