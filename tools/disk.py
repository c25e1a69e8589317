"""
What a finished stage keeps on disk. Training checkpoints hold every trainable tensor twice (the
current and the best-dev state) and Adam's two moments, and the one before them is kept as a way
back (checkpoint.prev): 16 bytes a trainable number, twice. For fine-tuning that is the whole PLM
per task, so train.py deletes them once results.tsv is written (--keep-checkpoints keeps them);
what later stages read (prompts, the autoencoder, z) is written apart.

Measured: one fine-tuning task of a frozen model of the T5-base shape (random weights; the bytes
do not depend on the values), two evaluations, with and without --keep-checkpoints.

    python -m tools.disk                 # T5-base shape (about 3 minutes and 8 GB of scratch on a CPU)
    python -m tools.disk --shape tiny
"""
import argparse
import tempfile
from pathlib import Path

import cli
import train
from tools import bench
from world import world


def folder_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def fine_tuning_kept(shape, scratch):
    """Bytes one finished fine-tuning task keeps, with and without --keep-checkpoints, and the PLM's
    parameter count: -> {"kept": …, "deleted": …, "parameters": …}."""
    from transformers import AutoTokenizer
    root = world.build()
    tokenizer = AutoTokenizer.from_pretrained(root / "model")         # the world's tasks, in their own words
    model = bench.frozen_t5(shape, len(tokenizer), "cpu")
    model.save_pretrained(Path(scratch) / "model")
    tokenizer.save_pretrained(Path(scratch) / "model")
    common = ["--stage", "ft", "--task", "pick-00", "--model", str(Path(scratch) / "model"),
              "--data-dir", str(root / "data"), "--tasks-file", str(root / "tasks.txt"),
              "--split", str(root / "splits" / "random.txt"), "--steps", "2", "--eval-every", "1",
              "--batch-size", "2", "--max-test", "4", "--max-target-len", "4", "--eval-batch-size", "8"]
    out = {}
    for label, extra in (("kept", ["--keep-checkpoints"]), ("deleted", [])):
        run = Path(scratch) / label
        train.main([*common, "--run", str(run), *extra])
        out[label] = folder_bytes(run)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    return out


@cli.command()
def main(argv=None):
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", choices=list(bench.SHAPES), default="base")
    p.add_argument("--scratch", default="", help="where to write (default: a temporary folder)")
    args = p.parse_args(argv)
    if args.scratch:
        cli.folder_option("--scratch", args.scratch, writable=True)
    cli.checked()
    with tempfile.TemporaryDirectory(dir=args.scratch or None) as scratch:
        got = fine_tuning_kept(args.shape, scratch)
    n = got["parameters"]
    print(f"fine-tuning one task, {args.shape} shape ({n / 1e6:.1f} M parameters, {4 * n / 1e9:.2f} GB in fp32):")
    print(f"  --keep-checkpoints: {got['kept'] / 1e9:.2f} GB a task ({got['kept'] / (4 * n):.1f} × the weights); "
          f"120 tasks: {120 * got['kept'] / 1e9:.0f} GB")
    print(f"  default (deleted once results.tsv is written): {got['deleted'] / 1e3:.1f} kB a task")
    return got


if __name__ == "__main__":
    main()
