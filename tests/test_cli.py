"""Every entry point ends a user's mistake the same way (cli.py), and leaves what it found untouched.

The fuzz test reads each command's options from its own parser (a new option is covered the day it is
added), draws a bad value of the option's kind, runs the command in-process under IPT_CHECK_ONLY=1
(every check, then a stop before anything loads) against a run folder that holds a finished stage,
and holds it to the contract: status 0 (accepted), 2 (a bad option) or 1 (bad data or a bad file);
a refusal is one line on stderr beginning `error:` and no traceback (an exception that escapes is a
bug, and fails the test with its traceback); every file that was there is byte-identical after."""
import argparse
import hashlib
import os
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tools import bench
import cli
import data
from tools import disk
import evaluate
from paper import experiments
from tools import export_peft
from tools import gpucheck
from world import oracle
import train
from world import world
from test_train import args as train_args, make_world

COMMANDS = {"train.py": train, "paper/experiments.py": experiments, "data.py": data, "evaluate.py": evaluate,
            "tools/export_peft.py": export_peft, "world/world.py": world, "world/oracle.py": oracle, "tools/bench.py": bench,
            "tools/gpucheck.py": gpucheck, "tools/disk.py": disk}
NOT_WRITABLE = "/sys/kernel"          # refuses new entries even to root (a chmod'ed folder does not)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A tiny world with a finished PT stage (its prompts, results, checkpoint kept) to be left alone."""
    root = make_world(tmp_path_factory.mktemp("cli"))
    train.main(train_args(root, "found", "--stage", "pt", "--steps", "10", "--keep-checkpoints"))
    (root / "a-file.txt").write_text("not a folder\n")
    (root / "empty").mkdir()
    return root


def baselines(home):
    """Each command's valid, cheap command line: what a bad value of one option is put into."""
    run = home / "runs" / "found"
    return {"train.py": train_args(home, "found", "--stage", "pt", "--steps", "10", "--keep-checkpoints"),
            "paper/experiments.py": ["--run", str(run)],
            "data.py": ["check", "--data-dir", str(home / "data"), "--split", str(home / "split.txt"),
                        "--tasks-file", str(home / "tasks.txt")],
            "evaluate.py": ["compare", str(run / "pt-s100-default")],
            "tools/export_peft.py": ["--from", str(run / "prompts-s100"), "--out", str(home / "adapters")],
            "world/world.py": ["--root", str(home / "a-world")], "world/oracle.py": [], "tools/bench.py": [],
            "tools/gpucheck.py": ["--out", str(home / "gpu")], "tools/disk.py": []}


class Caught(Exception):
    """The parser a command builds, caught at its first parse."""


def parsers(module):
    """The command's parser and, for a command with sub-commands, each sub-command's."""
    found = []

    def catch(self, argv=None, namespace=None):
        found.append(self)
        raise Caught
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cli.ArgumentParser, "parse_args", catch)
        with pytest.raises(Caught):
            module.main([])
    top = found[0]
    subs = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return [(name, sub) for a in subs for name, sub in a.choices.items()] or [(None, top)]


def options(name, module):
    """(command, sub-command, option string or positional index, its kind) for every option --help lists."""
    out = []
    for sub, p in parsers(module):
        for action in p._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.nargs == 0:
                kind = "flag"
            elif action.choices:
                kind = "choice"
            else:
                kind = {int: "int", float: "float"}.get(action.type, "text")
            out.append((name, sub, action.option_strings[-1] if action.option_strings else action.dest, kind))
    return out


ALL = [o for name, module in COMMANDS.items() for o in options(name, module)]


def bad_values(kind, home):
    numbers = st.sampled_from(["0", "-1", "-7", "x", "", "1.5", "nan", "-inf", "1e400"])
    paths = st.sampled_from(["", "no-such-name", str(home / "no" / "such" / "path"), str(home / "a-file.txt"),
                             str(home / "empty"), str(home / "data"), NOT_WRITABLE, NOT_WRITABLE + "/ipt"])
    return {"int": numbers, "float": numbers, "choice": st.sampled_from(["", "unknown", "0"]),
            "flag": st.sampled_from(["=x", "=1"]),
            "text": st.one_of(paths, st.text(min_size=0, max_size=12))}[kind]


def with_value(argv, sub, option, kind, value):
    """argv with `option` set to `value`: replaced where the baseline has it, else added."""
    argv = list(argv)
    if not option.startswith("-"):                                     # a positional: the one after the sub-command
        i = (argv.index(sub) + 1) if sub else 0
        while i < len(argv) and argv[i].startswith("-"):
            i += 2
        return argv[:i] + [value] + argv[i + 1:] if i < len(argv) else argv + [value]
    if kind == "flag":
        return argv + [option + value]
    if option in argv:
        i = argv.index(option)
        return argv[:i + 1] + [value] + argv[i + 2:]
    return argv[:1] + [option, value] + argv[1:] if sub else argv + [option, value]


def snapshot(root):
    """Every folder and file under root, each file with its bytes' hash."""
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder" for p in root.rglob("*")}


def holds_the_contract(module, argv, capsys):
    try:
        module.main(argv)
        status = 0
    except SystemExit as e:
        status = e.code or 0
    err = capsys.readouterr().err
    assert status in (0, 1, 2), (argv, status, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, (argv, err)
    if status:
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], (argv, status, err)
    return status, err


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(case=st.data())
def test_every_option_of_every_command_holds_the_contract(home, capsys, monkeypatch, case):
    monkeypatch.setenv("IPT_CHECK_ONLY", "1")
    monkeypatch.chdir(home)                                            # a relative path lands where it is seen
    name, sub, option, kind = case.draw(st.sampled_from(ALL), label="option")
    value = case.draw(bad_values(kind, home), label="value")
    before = snapshot(home)
    argv = with_value(baselines(home)[name], sub, option, kind, value)
    holds_the_contract(COMMANDS[name], argv, capsys)
    assert snapshot(home) == before, (name, argv)


def test_the_baselines_are_accepted(home, capsys, monkeypatch):
    """Else the fuzz test would only ever see refusals of the baseline itself."""
    monkeypatch.setenv("IPT_CHECK_ONLY", "1")
    for name, argv in baselines(home).items():
        status, err = holds_the_contract(COMMANDS[name], argv, capsys)
        assert status == 0, (name, err)


def test_every_command_and_option_is_reached():
    assert {name for name, *_ in ALL} == set(COMMANDS) and len(ALL) > 120
    assert ("train.py", None, "--run", "text") in ALL and ("data.py", "check", "--k", "int") in ALL


@pytest.mark.parametrize("argv, status, says", [
    (["paper/experiments.py", "--splits", "randm"], 2, r"--splits takes comma-separated split names of .*random"),
    (["paper/experiments.py", "--data-dir", "/no/such/folder", "--model", "m"], 2, r"--data-dir /no/such/folder is not a folder"),
    (["paper/experiments.py", "--dims", "0,2"], 2, r"--dims takes comma-separated whole numbers ≥ 1, got '0,2'"),
    (["paper/experiments.py", "--pt-steps", "-5"], 2, r"--pt-steps takes a number ≥ 1, got -5"),
    (["paper/experiments.py", "--train-args", "--stage pq"], 2, r"--train-args '--stage pq': unknown --stage 'pq'"),
    (["train.py", "--run", "A_FILE"], 2, r"--run \S+a-file.txt is a file, not a folder"),
    (["train.py", "--run", NOT_WRITABLE + "/ipt"], 2, r"--run /sys/kernel/ipt: /sys/kernel is not a writable folder"),
    (["evaluate.py", "compare", "/no/such/results.tsv"], 1, r"no results.tsv at /no/such/results.tsv"),
])
def test_the_cases_of_the_issue_end_in_one_line_naming_what_to_fix(home, capsys, monkeypatch, argv, status, says):
    if NOT_WRITABLE in " ".join(argv) and (not os.path.isdir(NOT_WRITABLE) or cli.can_write(NOT_WRITABLE)):
        pytest.skip(f"{NOT_WRITABLE} is not a folder this machine refuses to write")
    monkeypatch.setenv("IPT_CHECK_ONLY", "1")
    name, *rest = argv
    rest = [str(home / "a-file.txt") if a == "A_FILE" else a for a in rest]
    if name == "train.py":
        rest = train_args(home, "found", "--stage", "pt")[2:] + rest
    got, err = holds_the_contract(COMMANDS[name], rest, capsys)
    assert got == status and re.search(says, err), err


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only a user's mistake is turned into one line: anything else escapes to be reported."""
    monkeypatch.setattr(data, "check", lambda *a, **k: [][1])
    with pytest.raises(IndexError):
        data.main(["check", "--data-dir", ".", "--split", "random"])


def as_run(name):
    """How the README runs a command: a file at the root by its name, one in a folder as a module."""
    return [name] if "/" not in name else ["-m", name.removesuffix(".py").replace("/", ".")]


def test_every_entry_point_answers_help_as_the_readme_runs_it():
    """A moved or renamed command cannot break silently: each one, run as a program, prints its usage."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in COMMANDS:
        r = subprocess.run([sys.executable, *as_run(name), "--help"], cwd=root, capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.startswith("usage:"), (name, r.stderr[-500:])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_command_run_as_a_program_ends_a_bad_option_in_one_line_and_status_2(name, tmp_path):
    """The same contract at the process's edge: what the shell sees, for every entry point."""
    program = as_run(name)
    r = subprocess.run([sys.executable, *program, *(["check"] if name == "data.py" else ["compare"] if name == "evaluate.py"
                                                    else []), "--no-such-option", "1"],
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert f"(see {' '.join(['python', *program]) if '/' in name else name} --help)" in r.stderr
