"""
The whole IPT pipeline on the offline world (world.py), where the intrinsic dimension is known.

  1. PT   on every task of the world (seed-100 data)
  2. MSF  on the training tasks, for each d_I in --dims
  3. IST  in each subspace: seen tasks with the same data (seed 100), seen tasks with resampled
          data (seed 21), unseen tasks; and the random-subspace baseline on the unseen tasks
  4. a report: E_abs / E_rel (against PT) per challenge and d_I, as a markdown table and a plot

    python demo.py                 # make demo; writes runs/demo/report.md and e_rel.png
"""
import argparse
import json
import time
from pathlib import Path

import data
import evaluate
import train
import world

CHALLENGES = (  # column, stage folder pattern, section of the random split
    ("MSF reconstruction (seen)", "msf-d{d}", "train"),
    ("IST seen, same data", "ist-d{d}-s100-train+test", "train"),
    ("IST seen, new data", "ist-d{d}-s21-train", "train"),
    ("IST unseen", "ist-d{d}-s100-train+test", "test"),
    ("random subspace, unseen", "ist-random-d{d}-s100-test", "test"),
)


def stage(root, run, *extra, steps, eval_every=25):
    """One train.py stage on the world, in this process."""
    train.main(["--model", str(root / "model"), "--data-dir", str(root / "data"),
                "--tasks-file", str(root / "tasks.txt"), "--split", str(root / "splits" / "random.txt"),
                "--run", str(run), "--prompt-len", str(json.loads((root / "world.json").read_text())["config"]["prompt_len"]),
                "--batch-size", "4", "--eval-every", str(eval_every), "--steps", str(steps), *map(str, extra)])


def pipeline(root, run, dims, pt_steps, msf_steps, ist_steps):
    stage(root, run, "--stage", "pt", steps=pt_steps)
    for d in dims:
        stage(root, run, "--stage", "msf", "--intrinsic-dim", d, steps=msf_steps)
        stage(root, run, "--stage", "ist", "--intrinsic-dim", d, "--tasks-from", "train,test", steps=ist_steps)
        stage(root, run, "--stage", "ist", "--intrinsic-dim", d, "--data-seed", 21, "--tasks-from", "train",
              steps=ist_steps)
        stage(root, run, "--stage", "ist", "--intrinsic-dim", d, "--tasks-from", "test",
              "--subspace", "random", steps=ist_steps)


def table(root, run, dims):
    """{challenge: {d_I: summarise(...)}} with E_rel against PT on the same tasks."""
    sections = data.load_split(root / "splits" / "random.txt", data.load_tasks(root / "tasks.txt"))
    pt = evaluate.read_results(run / "pt-s100-default" / "results.tsv")
    out = {}
    for name, folder, section in CHALLENGES:
        for d in dims:
            scores = evaluate.read_results(run / folder.format(d=d) / "results.tsv")
            scores = {t: s for t, s in scores.items() if t in sections[section]}
            out.setdefault(name, {})[d] = evaluate.summarise(scores, pt)
    return out, pt


def write_report(root, run, dims, seconds):
    results, pt = table(root, run, dims)
    cfg = json.loads((root / "world.json").read_text())
    recovery = []
    for kind in world.TYPES:                                 # PT from K examples vs the true conditioning
        scores = [v for t, v in pt.items() if t.startswith(kind)]
        true = cfg["pretraining"][f"accuracy_{kind}"]
        recovery.append(f"{kind}: PT {sum(scores) / len(scores):.3f} vs true conditioning {true:.3f}")
    lines = [f"# IPT on the offline world (planted d* = {cfg['config']['dim']})", "",
             f"Pretraining: {cfg['pretraining']['steps']} steps in {cfg['pretraining']['seconds']} s; "
             f"test accuracy by type, {'; '.join(recovery)}.",
             f"PT, all {len(pt)} tasks: E_abs = {100 * sum(pt.values()) / len(pt):.1f}. Pipeline time {seconds / 60:.1f} min.",
             "", "E_rel against PT (E_abs ×100 in brackets):", "",
             "| challenge | " + " | ".join(f"d_I={d}" for d in dims) + " |",
             "|---|" + "---:|" * len(dims)]
    for name, by_dim in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{s['E_rel']:.2f} ({100 * s['E_abs']:.0f})"
                                                 for s in by_dim.values()) + " |")
    (run / "report.md").write_text("\n".join(lines) + "\n")
    plot(results, dims, cfg["config"]["dim"], run / "e_rel.png")
    print("\n".join(lines))
    return results


def plot(results, dims, planted, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_dim in results.items():
        ax.plot(dims, [by_dim[d]["E_rel"] for d in dims], marker="o", label=name,
                linestyle="--" if "random" in name else "-")
    ax.axvline(planted, color="grey", linewidth=0.8)
    ax.text(planted, 0.02, " planted d*", color="grey")
    ax.set(xlabel="intrinsic dimension d_I", ylabel="E_rel (vs prompt tuning)", ylim=(0, 1.2), xticks=dims)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="runs/demo", help="output folder")
    p.add_argument("--dims", default="1,2,3,4,6,8", help="the d_I to try (default 1 … 2·d*)")
    p.add_argument("--pt-steps", type=int, default=300)
    p.add_argument("--msf-steps", type=int, default=200)
    p.add_argument("--ist-steps", type=int, default=150)
    args = p.parse_args(argv)
    dims = [int(d) for d in args.dims.split(",")]
    started = time.time()
    root = world.build()
    pipeline(root, Path(args.run), dims, args.pt_steps, args.msf_steps, args.ist_steps)
    return write_report(root, Path(args.run), dims, time.time() - started)


if __name__ == "__main__":
    main()
