"""Pinned CPU numerics (world/numerics.py). What holds, and so what is tested: the same bits on one machine
(the same command twice; a resumed run as an uninterrupted one: tests/test_train.py, test_faults.py),
and the pin in effect. The same bits across machines hold only among CPUs of one vendor under the pin
(MKL's reproducible branch and oneDNN's kernels differ between vendors: ../shared/repro/machines.md),
so no test compares this machine's bits with another's; a known family's reference is reported as a
diagnostic in the test's output, never a failure. The world's numbers across vendors are another draw
within the bands that the README gives (tests/test_paper.py holds this machine's demo in them)."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from world import numerics
import train
from world import world
from conftest import REAL, needs

HERE = Path(__file__).resolve().parents[1]
PROBE = REAL.parents[1] / "repro" / "probe.py"
# Diagnostics only: the bits that AMD EPYCs (AVX2 only, and AVX-512) compute under the pin, and an Intel
# Xeon with AMX (2026-12-04). The short run below: AMD e24e906ee87d (ATen default ed9c1a7d820a,
# MKL_CBWR=COMPATIBLE 3a2dcc586ca1, both on AMD), Intel 1ffb87c57f54. The probe: AMD d6dd6baeae1f, Intel 82669cf1a29a.
REFERENCE_RUN = {"e24e906ee87d": "the AMD EPYCs' pinned bits", "1ffb87c57f54": "the Intel Xeon's (AMX) pinned bits"}
REFERENCE_PROBE = {"d6dd6baeae1f": "the AMD EPYCs' pinned bits", "82669cf1a29a": "the Intel Xeon's (AMX) pinned bits"}


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


def diagnose(got, references):
    """One line for the test's output: whose bits these are, if a known family's."""
    print(f"{got}: {references.get(got, 'no reference family computes these bits (another draw)')}, "
          f"with {numerics.state()}")


def short_world_run(run):
    """PT of 6 world tasks for 20 steps, MSF on 4 of them, IST of d_I = 2 on the other 2: 5 s."""
    root = world.build()
    split = run.parent / "split.txt"
    split.parent.mkdir(parents=True, exist_ok=True)
    split.write_text("[train]\npick-00\npick-01\ncolour-00\ncolour-01\n[test]\npick-30\ncolour-30\n")
    common = ["--run", str(run), "--model", str(root / "model"), "--data-dir", str(root / "data"),
              "--tasks-file", str(root / "tasks.txt"), "--split", str(split), "--prompt-len", "4",
              "--batch-size", "4", "--eval-every", "10", "--intrinsic-dim", "2", "--max-test", "20", "--steps", "20"]
    for stage in (["pt", "--tasks-from", "train,test"], ["msf"], ["ist", "--tasks-from", "test"]):
        train.main([*common, "--stage", *stage])
    return tensors_hash(run)


@pytest.mark.slow
def test_a_short_world_run_computes_the_same_bits_twice(tmp_path):
    first, second = short_world_run(tmp_path / "a" / "run"), short_world_run(tmp_path / "b" / "run")
    diagnose(first, REFERENCE_RUN)
    assert first == second, f"the same run twice on this machine gave {first} and {second} ({numerics.state()})"


def probe():
    out = subprocess.run([sys.executable, "-c", f"from world import numerics; numerics.pin(); exec(open({str(PROBE)!r}).read())"],
                         cwd=HERE, env={**unpinned_env(), "IPT_NUMERICS": "pinned"}, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == str(numerics.THREADS), out
    return out[2]


@needs(PROBE.is_file(), f"{PROBE} (shared/)")
def test_the_probe_computes_the_same_bits_in_two_processes_under_the_pin():
    first, second = probe(), probe()
    diagnose(first, REFERENCE_PROBE)
    assert first == second, f"the probe printed {first} and then {second} under the pin ({numerics.state()})"


def run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], cwd=HERE, env={**unpinned_env(), **env},
                          capture_output=True, text=True)


def test_the_pin_reaches_torch_and_says_so():
    r = run_python("from world import numerics; numerics.pin(); import torch; from world import numerics as n; print(n.state())")
    assert r.returncode == 0 and r.stdout.startswith("pinned CPU numerics: ATen AVX2, oneDNN AVX2, MKL AVX2,STRICT, "
                                                     f"{numerics.THREADS} threads"), r.stdout + r.stderr


def test_torch_loaded_first_is_said_never_run_silently_unpinned():
    r = run_python("import torch; from world import numerics; numerics.pin(); print(numerics.state())")
    assert "torch was imported before numerics.pin()" in r.stderr and r.stdout.startswith("native"), r.stdout + r.stderr


def test_the_choice_is_the_environments_then_the_entry_points():
    assert run_python("from world import numerics; numerics.pin(); from world import numerics as n; print(n.state())",
                      IPT_NUMERICS="native").stdout.startswith("native")
    assert run_python("from world import numerics; numerics.pin(default=False); print(numerics.state())").stdout.startswith("native")
    r = run_python("from world import numerics; numerics.pin()", IPT_NUMERICS="fast")
    assert r.returncode == 1 and r.stderr.strip() == "error: IPT_NUMERICS is pinned or native, got 'fast'"


def test_the_runner_pins_the_world_and_leaves_real_data_alone(tmp_path):
    """paper/experiments.py decides before torch loads, from its command line."""
    for args, expected in ((["--help"], "pinned"), (["--data-dir", str(tmp_path), "--help"], "native")):
        code = (f"import sys, runpy\nfrom world import numerics\nsys.argv = ['paper/experiments.py', *{args!r}]\n"
                "try: runpy.run_module('paper.experiments', run_name='__main__', alter_sys=True)\n"
                "except SystemExit: print(numerics.state())")
        r = run_python(code)
        assert r.stdout.splitlines()[-1].startswith(expected), (args, r.stdout, r.stderr)
