"""
The LoRA study (paper/experiments.py --lora; make lora): does an intrinsic task subspace exist for LoRA, is
its dimension the prompts', and does MSF's learnt non-linear subspace beat the mean LoRA, the linear
span and random bases of the same size? Planned beside the prompts' own runs, drawn in one figure.

Under --run, on each split of --lora-splits (held-out tasks, d_I = 1 … the sweep):
  lora-pt-s100-all/, loras-s100/<task>/        LoRA-PT of every task: E_rel^LoRA's reference, the library
  <split>/lora-msf-d<d>/                       MSF over the split's training tasks' LoRAs
  <split>/lora-ist[-<subspace>]-d<d>-…/        IST of the held-out tasks through MSF's Proj_b, and through
                                               the baselines of lora_subspaces.py at the same d_I (the means: 0)

The world plants d* numbers a task whatever the adapter reads them through, so if LoRA-PT learns the
tasks, LoRA-IST should have its knee where prompt IST has it (d* on cls / non-cls, d* + 1 on random);
the mean LoRA knows no task's θ, and a random basis of a few directions in N numbers should find little.
"""
import math

import data
from runner import figures, results
from runner.jobs import Cell, heldout_label

METHODS = {"msf": "LoRA-IST", "pca": "LoRA-PCA", "delta-pca": "LoRA-ΔW-PCA", "hub": "LoRA-hub", "basis": "LoRA-basis",
           "fastfood": "LoRA-Fastfood", "random": "LoRA-random", "mean": "LoRA-mean", "delta-mean": "LoRA-ΔW-mean",
           "delta-mean-r": "LoRA-ΔW-mean-r"}
FIXED = ("mean", "delta-mean", "delta-mean-r")                         # 0 numbers: one run serves every d_I
LORA = ["--adapter", "lora"]
# LoRA-MSF's α: its reconstruction term is a relative error (≤ 1 from the start, lora.LoraAutoencoder), so at
# the prompts' α = 1 the LM loss alone shapes Proj_b. On the world (random split, d_I = 4, world/WORLD.md)
# α = 1 / 10 / 100 gave T_train(LoRA-MSF) 0.61 / 0.74 / 0.75 and LoRA-IST 0.58 / 0.71 / 0.71 (E_abs).
MSF_ALPHA = 100


def plan(p, args, job, run, splits, split_path):
    """LoRA-PT of every task of the study's splits, then per split and d_I MSF and IST through each subspace."""
    study = [s for s in args.lora_splits if s in splits]
    everything = list(dict.fromkeys(t for s in study for sec in splits[s].values() for t in sec))
    all_file = run / "splits" / "lora.txt"
    data.write_split(all_file, {"all": everything})
    store = ["--prompt-store", str(run / "loras-s100")]
    pt = p.add(job(run, all_file, *LORA, "--stage", "pt", "--tasks-from", "all", "--steps", args.pt_steps))
    p.meta["lora"] = {"splits": study, "dims": args.lora_dims, "pt": pt, "skipped": []}
    for s in study:
        sections = splits[s]
        held = [sec for sec in sections if sec not in ("train", "test_out")]    # a kind's subspace, its own kind
        where, label = (run / s, split_path(args, s)), f"LoRA {s}"
        ist = lambda kind, d, where=where, held=held: p.add(job(
            *where, *LORA, "--stage", "ist", "--subspace", kind, "--intrinsic-dim", d, "--steps", args.ist_steps,
            "--tasks-from", ",".join(held), *store))
        fixed = {kind: ist(kind, 1) for kind in FIXED}
        K = len(sections["train"])
        for d in args.lora_dims:
            msf = p.add(job(*where, *LORA, "--stage", "msf", "--intrinsic-dim", d, "--steps", args.msf_steps,
                            "--alpha", MSF_ALPHA, *store))
            p.cells.append(Cell(label, "T_train(LoRA-MSF)", d, [msf], sections["train"], ref=pt))
            for kind, method in METHODS.items():
                if (kind in ("pca", "delta-pca") and d > K - 1) or (kind == "hub" and d > K):
                    p.meta["lora"]["skipped"].append(f"{method} on {s} at d_I = {d} ({K} training LoRAs)")
                    continue
                run_ = fixed[kind] if kind in FIXED else ist(kind, d)
                p.cells += [Cell(label, heldout_label(sec, method), d, [run_], sections[sec], ref=pt) for sec in held]


# -----------------------------------------------------------------------------
# The report's section

MIN_RISE = 0.05          # E_rel over 8–16 held-out tasks: a smaller step is within a task's flip


def knee(dims, ys):
    """Where the curve reaches its plateau: the last d_I whose step into it is at least MIN_RISE and
    larger than every step after it (the step into d* larger than every later one, as the README
    reads prompt IST's knees) -> (d, that step, the largest later step; 0.0 at the sweep's end) or None."""
    pairs = [(d, y) for d, y in zip(dims, ys) if math.isfinite(y)]
    rises = [(pairs[i + 1][0], pairs[i + 1][1] - pairs[i][1]) for i in range(len(pairs) - 1)]
    for i in reversed(range(len(rises))):
        later = max([r for _, r in rises[i + 1:]], default=0.0)
        if rises[i][1] >= MIN_RISE and rises[i][1] > later:
            return rises[i][0], rises[i][1], later
    return None


LORA_STYLE = {"LoRA-IST": ("tab:red", "s"), "LoRA-PCA": ("tab:purple", "D"), "LoRA-ΔW-PCA": ("tab:pink", "v"),
              "LoRA-hub": ("tab:brown", "P"), "LoRA-basis": ("tab:olive", "x"), "LoRA-Fastfood": ("tab:green", "^"),
              "LoRA-random": ("tab:grey", "x"), "LoRA-mean": ("tab:cyan", None), "LoRA-ΔW-mean": ("tab:blue", None),
              "LoRA-ΔW-mean-r": ("tab:orange", None), "IST": ("black", "o")}


def figure(per_split, dims, planted, path):
    """One panel per split: E_rel of the held-out tasks (of the training tasks' kind) over d_I, each LoRA
    subspace (solid; dashed the means, the same at every d_I) and the prompts' IST (black, dotted)."""
    fig, axes = figures.plt.subplots(1, len(per_split), figsize=(6 * len(per_split), 4), squeeze=False)
    for ax, (split, lines) in zip(axes[0], per_split.items()):
        top = 1.25
        for ch, ys in lines.items():
            method = ch[ch.index("(") + 1:-1]
            colour, marker = LORA_STYLE[method]
            prompt = ch.startswith("prompt")
            style = ":" if prompt else "--" if marker is None else "-"      # dashed: a mean, 0 numbers
            top = max([top] + [1.08 * y for y in ys if math.isfinite(y)])
            ax.plot(dims, ys, marker=marker, color=colour, linestyle=style, markersize=4,
                    label="prompt IST (E_rel^PT)" if prompt else method)
        if planted.get(split):
            figures.mark_planted(ax, planted[split], top=True)
        ax.axhline(1.0, color="grey", linewidth=0.5)
        ax.set(title=f"{split} split: LoRA subspaces (E_rel^LoRA) and prompt IST (E_rel^PT)",
               xlabel="intrinsic dimension d_I (numbers tuned per task)", ylabel="E_rel", xticks=dims, ylim=(0, top))
        ax.title.set_fontsize(9)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figures.save(fig, path)


def curves(rows, split, dims):
    """{challenge: E_rel values over dims} of the LoRA cells of one split, and the prompts' IST beside."""
    out = {ch: figures.curve(rows, f"LoRA {split}", ch, dims, "E_rel_PT")
           for ch in results.challenges(rows, f"LoRA {split}") if ch.startswith("T_test")}
    for ch in results.challenges(rows, split):
        if ch.startswith("T_test") and ch.endswith("(IST)") and "^out" not in ch:
            out[f"prompt {ch}"] = figures.curve(rows, split, ch, dims, "E_rel_PT")
    return out


def section(rows, p, out, planted):
    """The markdown lines of the LoRA study, lora.png beside them."""
    meta = p.meta["lora"]
    dims = meta["dims"]
    per_split = {s: curves(rows, s, dims) for s in meta["splits"]}
    figure(per_split, dims, planted, out / "lora.png")
    pt = results.scores_of(meta["pt"])
    lines = ["## Beyond the paper: the intrinsic task subspace of LoRA", "", "![LoRA](lora.png)", "",
             "E_rel^LoRA: each held-out task's score over its own LoRA-PT score (prompt IST beside it: E_rel^PT, over "
             "its prompt PT). LoRA-IST tunes d_I numbers through MSF's Proj_b over the training tasks' LoRAs; "
             "LoRA-mean is the training LoRAs' mean factors (Ā, B̄), LoRA-ΔW-mean their mean update mean_k B_k A_k "
             "(a LoRA of rank K·r) and LoRA-ΔW-mean-r its best rank-r LoRA (0 numbers each); LoRA-PCA their mean and "
             "top d_I principal directions over θ, LoRA-ΔW-PCA the same over the updates ΔW; LoRA-hub a learnt weighting of d_I of them (LoraHub); LoRA-basis and LoRA-Fastfood d_I "
             "random directions over all LoRA numbers from PEFT's start (Uni-LoRA, DID); LoRA-random MSF's Proj_b "
             "untrained (lora_subspaces.py).", ""]
    if pt:
        lines += [f"LoRA-PT, E_abs over its {len(pt)} tasks: {sum(pt.values()) / len(pt):.3f}.", ""]
    for s in meta["splits"]:
        lines += [f"E_rel, {s} split (held-out tasks):", "", "| method | " + " | ".join(f"d_I={d}" for d in dims) + " |",
                  "|---|" + "---:|" * len(dims)]
        for ch, ys in per_split[s].items():
            lines.append(f"| {ch} | " + " | ".join("missing" if math.isnan(y) else f"{y:.2f}" for y in ys) + " |")
        lines.append("")
        for ch in (c for c in per_split[s] if "IST" in c):
            k = knee(dims, per_split[s][ch])
            where = f"planted {planted[s]}" if planted.get(s) else "no planted d"
            lines.append(f"- {s}, {ch}: " + (f"knee at d_I = {k[0]} (a rise of {k[1]:+.2f}, every later rise "
                                              f"≤ {k[2]:+.2f}; {where})" if k else f"no knee ({where})"))
        lines.append("")
    if meta["skipped"]:
        lines += ["Not planned (more directions than the training LoRAs give): " + "; ".join(meta["skipped"]) + ".", ""]
    return lines
