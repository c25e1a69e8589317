"""Pinned CPU numerics (numerics.py): the same bits on every x86-64 CPU with AVX2. The golden hashes
were computed on an AMD EPYC with AVX-512 (2026-12-04) and, for the probe, on an AMD EPYC with AVX2
only: a machine where these fail computes other bits than those, and the README's tables are not
what it prints."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

import numerics
import train
import world
from conftest import REAL, needs

HERE = Path(__file__).resolve().parents[1]
PROBE = REAL.parents[1] / "repro" / "probe.py"
# The short world run below, pinned. On the AVX-512 EPYC, unpinned it is 5502d2c1f31e (1 or 2 threads);
# pinned but for ATEN_CPU_CAPABILITY=default ed9c1a7d820a, but for MKL_CBWR=COMPATIBLE 3a2dcc586ca1.
GOLDEN_RUN = "e24e906ee87d"
GOLDEN_PROBE = "d6dd6baeae1f"                  # ../shared/repro/probe.py's AVX2 machine, native and pinned


def unpinned_env():
    return {k: v for k, v in os.environ.items() if k not in numerics.PINNED and k != "IPT_NUMERICS"}


def tensors_hash(folder):
    """Every result table and tensor of a run folder (not the safetensors metadata: it names paths)."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix().encode()
        if path.suffix == ".tsv":
            h.update(name + path.read_bytes())
        elif path.suffix == ".safetensors":
            for key, value in sorted(load_file(path).items()):
                h.update(name + key.encode() + value.numpy().tobytes())
    return h.hexdigest()[:12]


@pytest.mark.slow
def test_a_short_world_run_has_the_committed_bits(tmp_path):
    """PT of 6 world tasks for 20 steps, MSF on 4 of them, IST of d_I = 2 on the other 2: 5 s."""
    root = world.build()
    split = tmp_path / "split.txt"
    split.write_text("[train]\npick-00\npick-01\ncolour-00\ncolour-01\n[test]\npick-30\ncolour-30\n")
    common = ["--run", str(tmp_path / "run"), "--model", str(root / "model"), "--data-dir", str(root / "data"),
              "--tasks-file", str(root / "tasks.txt"), "--split", str(split), "--prompt-len", "4",
              "--batch-size", "4", "--eval-every", "10", "--intrinsic-dim", "2", "--max-test", "20", "--steps", "20"]
    for stage in (["pt", "--tasks-from", "train,test"], ["msf"], ["ist", "--tasks-from", "test"]):
        train.main([*common, "--stage", *stage])
    got = tensors_hash(tmp_path / "run")
    assert got == GOLDEN_RUN, (f"this machine computes other bits than the golden run ({got}, not {GOLDEN_RUN}) "
                               f"with {numerics.state()}: the world's numbers here will not be the README's")


@needs(PROBE.is_file(), f"{PROBE} (shared/)")
def test_the_probe_computes_the_avx2_machines_bits_under_the_pin():
    out = subprocess.run([sys.executable, "-c", f"import numerics; numerics.pin(); exec(open({str(PROBE)!r}).read())"],
                         cwd=HERE, env={**unpinned_env(), "IPT_NUMERICS": "pinned"}, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == str(numerics.THREADS)
    assert out[2] == GOLDEN_PROBE, f"the probe printed {out}, not {GOLDEN_PROBE}, with {numerics.state()}"


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=HERE, env={**unpinned_env(), **env},
                          capture_output=True, text=True)


def test_the_pin_reaches_torch_and_says_so():
    r = run_python("import numerics; numerics.pin(); import torch, numerics as n; print(n.state())")
    assert r.returncode == 0 and r.stdout.startswith("pinned CPU numerics: ATen AVX2, oneDNN AVX2, MKL AVX2,STRICT, "
                                                     f"{numerics.THREADS} threads"), r.stdout + r.stderr


def test_torch_loaded_first_is_said_never_run_silently_unpinned():
    r = run_python("import torch, numerics; numerics.pin(); print(numerics.state())")
    assert "torch was imported before numerics.pin()" in r.stderr and r.stdout.startswith("native"), r.stdout + r.stderr


def test_the_choice_is_the_environments_then_the_entry_points():
    assert run_python("import numerics; numerics.pin(); import numerics as n; print(n.state())",
                      IPT_NUMERICS="native").stdout.startswith("native")
    assert run_python("import numerics; numerics.pin(default=False); print(numerics.state())").stdout.startswith("native")
    r = run_python("import numerics; numerics.pin()", IPT_NUMERICS="fast")
    assert r.returncode == 1 and r.stderr.strip() == "error: IPT_NUMERICS is pinned or native, got 'fast'"


def test_the_runner_pins_the_world_and_leaves_real_data_alone(tmp_path):
    """experiments.py decides before torch loads, from its command line."""
    for args, expected in ((["--help"], "pinned"), (["--data-dir", str(tmp_path), "--help"], "native")):
        code = (f"import sys, runpy, numerics\nsys.argv = ['experiments.py', *{args!r}]\n"
                "try: runpy.run_path('experiments.py', run_name='__main__')\nexcept SystemExit: print(numerics.state())")
        r = run_python(code)
        assert r.stdout.splitlines()[-1].startswith(expected), (args, r.stdout, r.stderr)
