"""torchrun: two CPU processes (gloo) train what one process trains. The step's rows and the
evaluation rows are shared out and the gradients summed, so the only difference is the order of
floating-point sums: results.tsv is identical and the prompts agree to 3e-5 (measured: ≤ 2.5e-6
after 40 steps at lr 0.3, entries of size ~0.1)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import checkpoint
from test_train import args

ROOT = Path(__file__).resolve().parents[1]


def run(world_, name, nproc):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "--"] if nproc > 1 \
        else [sys.executable]
    done = subprocess.run([*launch, str(ROOT / "train.py"), *args(world_, name, "--stage", "pt")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return world_ / "runs" / name


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(world):
    one, two = run(world, "one", 1), run(world, "two", 2)
    assert (one / "pt-s100-default" / "results.tsv").read_text() == (two / "pt-s100-default" / "results.tsv").read_text()
    for task in ("first-word", "last-word", "has-cat", "second-word"):
        a, b = (checkpoint.load(r / "prompts-s100" / f"{task}.safetensors")[0]["prompt"] for r in (one, two))
        assert torch.allclose(a, b, atol=3e-5), (task, (a - b).abs().max())
    lines = lambda r: (r / "pt-s100-default" / "metrics.jsonl").read_text().splitlines()
    assert len(lines(two)) == len(lines(one)) == 4                     # one writer: 40 steps, dev every 10
