"""The world's cache, shared by every world command: one builder at a time, published whole, a
damaged or mixed folder refused with what to do, a damaged shipped model never retrained over."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import checkpoint
from world import pretraining
from world import world
from world import world_cache
from conftest import small_world_config

SMALL = small_world_config()

HERE = Path(__file__).resolve().parents[1]
SMALL_ARGS = [a for k in ("items", "tasks_per_type", "unseen_per_type", "test_examples", "d_model", "pretrain_steps",
                          "pretrain_batch") for a in ("--world", f"{k}={getattr(SMALL, k)}")]


def world_py(root, *extra):
    return subprocess.Popen([sys.executable, "-m", "world.world", "--root", str(root), *SMALL_ARGS, *extra], cwd=HERE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def fingerprint(root):
    return json.loads((root / "world.json").read_text())["pretraining"]["data"]


@pytest.mark.slow
def test_commands_at_once_build_one_world_the_others_wait_and_read_it(tmp_path):
    root = tmp_path / "world"
    with checkpoint.Building(root, say=lambda _: None):             # a builder already at work
        runs = [world_py(root) for _ in range(3)]
        heads = [until_waiting(p) for p in runs]                     # each says so, then waits
    outputs = [head + p.communicate(timeout=300)[0] for head, p in zip(heads, runs)]
    assert [p.returncode for p in runs] == [0, 0, 0], outputs
    assert all("waiting for pid" in out for out in outputs), outputs
    assert sum("pretraining the world's model here" in out for out in outputs) == 1, outputs   # one built
    assert not any("warning" in out for out in outputs), outputs
    assert all(fingerprint(root) in out for out in outputs)
    assert world_cache.verified(root) == root
    assert sorted(p.name for p in tmp_path.iterdir()) == [".world.lock", "world"]   # nothing half-built left


def until_waiting(process):
    """What a world/world.py printed up to its "waiting for" line (or its end)."""
    lines = []
    while not lines or not ("waiting for" in lines[-1] or lines[-1] == ""):
        lines.append(process.stdout.readline())
    return "".join(lines)


@pytest.mark.slow
def test_a_builder_killed_mid_build_leaves_nothing_a_later_command_trusts(tmp_path, capsys):
    root = tmp_path / "world"
    builder = world_py(root, "--world", "pretrain_steps=5000")
    deadline = time.time() + 120
    while not list(tmp_path.glob(".world.building-*")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)                                                 # well into writing or pretraining
    os.kill(builder.pid, signal.SIGKILL)
    builder.wait()
    assert not root.exists()                                        # never published half
    assert world.build(SMALL, root) == root
    said = capsys.readouterr().out
    assert f"cleared the lock of pid {builder.pid} " in said
    assert f"removed {tmp_path / f'.world.building-{builder.pid}'}, left by a builder that was stopped" in said
    assert fingerprint(root) == world_cache.data_hash(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".world.lock", "world"]


def test_a_stale_lock_and_private_folder_are_cleared_saying_what(tmp_path):
    root = tmp_path / "world"
    (tmp_path / ".world.lock").write_text("pid 999999 on elsewhere since 2026-12-05 00:00:00")
    (tmp_path / ".world.building-999999" / "data").mkdir(parents=True)
    (tmp_path / "world.tmp").mkdir()                               # left by a build before builds were locked
    said = []
    with checkpoint.Building(root, say=said.append) as b:
        (b.private() / "x").write_text("done")
        b.publish()
    assert said == ["cleared the lock of pid 999999 on elsewhere since 2026-12-05 00:00:00, which no longer runs",
                    f"removed {tmp_path / '.world.building-999999'}, left by a builder that was stopped",
                    f"removed {tmp_path / 'world.tmp'}, left by a builder that was stopped"]
    assert (root / "x").read_text() == "done" and (tmp_path / ".world.lock").read_text() == ""


def test_a_failed_build_publishes_nothing_and_keeps_the_old_folder(tmp_path):
    root = tmp_path / "world"
    root.mkdir()
    (root / "old").write_text("kept")
    with pytest.raises(RuntimeError), checkpoint.Building(root, say=print) as b:
        b.private()
        raise RuntimeError("the build failed")
    assert [p.name for p in root.iterdir()] == ["old"] and not list(tmp_path.glob(".world.building-*"))


@pytest.fixture
def cached(small_world, tmp_path):
    """A built world of this test's own (a copy: its files' times change, so it is verified afresh)."""
    return Path(shutil.copytree(small_world, tmp_path / "world"))


@pytest.mark.parametrize("damage", ["a task file", "the model", "world.json"])
def test_a_cache_that_does_not_match_its_world_json_is_refused_naming_the_fix(cached, damage):
    target = {"a task file": next((cached / "data").rglob("*.tsv")), "the model": cached / "model" / "model.safetensors",
              "world.json": cached / "world.json"}[damage]
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 3])
    with pytest.raises(world_cache.WorldError, match=f"rm -r {cached}.*python -m world.world --rebuild"):
        world.build(SMALL, cached)


def test_a_damaged_shipped_model_is_named_never_retrained_over(tmp_path, monkeypatch, cached):
    monkeypatch.setattr(world, "SHIPPED", tmp_path / "shipped")
    out = world.ship(SMALL, cached)
    weights = out / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    monkeypatch.setattr(pretraining, "pretrain", lambda *a: pytest.fail("retrained over a damaged shipped model"))
    with pytest.raises(world_cache.WorldError, match=f"{weights} is damaged.*git checkout -- world/shipped/"):
        world.build(SMALL, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_the_shipped_model_carries_the_checksums_of_its_weights():
    source = world.shipped(world.WorldConfig())
    sums = json.loads((source / "pretraining.json").read_text())["sha256"]
    assert {"model/model.safetensors", "conditioner.safetensors"} <= set(sums)
    assert all(world_cache.file_hash(source / name) == digest for name, digest in sums.items())
