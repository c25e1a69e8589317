"""What a user types wrong and what a disk does wrong: every case ends in one clear line that names
the flag or the file and what to do, never a traceback, and nothing already trained is lost.

The toy tasks and tiny T5 are test_train's. Tests that must show a check comes before the model
loads make loading its weights fail loudly (`no_model`)."""
import errno
import json
import os
import re
import subprocess
import sys

import pytest
import torch

import checkpoint
import data
import evaluate
import plm
import train
import trainstep
from test_train import args, make_world, results


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = make_world(tmp_path_factory.mktemp("faults"))
    train.main(args(root, "base", "--stage", "pt", "--steps", "20"))          # prompts for MSF, then MSF
    train.main(args(root, "base", "--stage", "msf", "--steps", "10"))
    return root


@pytest.fixture
def no_model(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the check")
    monkeypatch.setattr(plm, "load", refuse)                        # reading its config.json is allowed


def fails(argv, match):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert e.value.code in (1, 2), e.value.code                        # cli.py: a bad option 2, bad input 1
    text = str(e.value)
    assert text.startswith("error: ") and "Traceback" not in text
    assert re.search(match, text, re.S), text
    return text


# --- options: all checked at parse time, before any file or model is read -----------------------

BAD_OPTIONS = [
    (["--intrinsic-dim", "0"], r"--intrinsic-dim must be a number ≥ 1, got 0"),
    (["--intrinsic-dim", "-3"], r"--intrinsic-dim must be a number ≥ 1, got -3"),
    (["--alpha", "-1"], r"--alpha must be a number ≥ 0, got -1"),
    (["--alpha", "nan"], r"--alpha must be a number ≥ 0, got nan"),
    (["--lr", "-0.1"], r"--lr must be a number ≥ 0, got -0.1"),
    (["--lr", "inf"], r"--lr must be a number ≥ 0, got inf"),
    (["--prompt-len", "0"], r"--prompt-len must be a number ≥ 1"),
    (["--steps", "0"], r"--steps must be a number ≥ 1"),
    (["--batch-size", "-2"], r"--batch-size must be a number ≥ 1"),
    (["--eval-every", "0"], r"--eval-every must be a number ≥ 1"),
    (["--k", "0"], r"--k must be a number ≥ 1"),
    (["--seed", "-1"], r"--seed must be a number ≥ 0"),
    (["--data-seed", "-5"], r"--data-seed must be a number ≥ 0"),
    (["--max-input-len", "0"], r"--max-input-len must be a number ≥ 1"),
    (["--max-target-len", "0"], r"--max-target-len must be a number ≥ 1"),
    (["--num-beams", "0"], r"--num-beams must be a number ≥ 1"),
    (["--eval-batch-size", "0"], r"--eval-batch-size must be a number ≥ 1"),
    (["--ae-hidden", "-1"], r"--ae-hidden must be a number ≥ 0"),
    (["--patience", "-1"], r"--patience must be a number ≥ 0"),
    (["--max-test", "-1"], r"--max-test must be a number ≥ 0"),
    (["--tokens-per-forward", "-1"], r"--tokens-per-forward must be a number ≥ 0"),
    (["--clip", "-1"], r"--clip must be a number ≥ 0"),
    (["--warmup", "1.5"], r"--warmup must be in \[0, 1\), got 1.5"),
    (["--label-smoothing", "-0.1"], r"--label-smoothing must be in \[0, 1\)"),
    (["--stage", "pq"], r"unknown --stage 'pq': choose pt, msf, ist, reconstruct, ft"),
    (["--subspace", "lda"], r"unknown --subspace .lda.: choose msf, random, pca"),
    (["--z-init", "ones"], r"unknown --z-init 'ones': choose normal, zeros, mean"),
    (["--prompt-init", "text"], r"unknown --prompt-init 'text'"),
    (["--optimizer", "sgd"], r"unknown --optimizer .sgd.: choose adamw, adafactor"),
    (["--precision", "fp16"], r"unknown --precision .fp16.: choose auto, bf16, fp32"),
    (["--stage", "ist", "--init-from-ist", "x"], r"--init-from-ist and --init-from-peft belong to --stage pt"),
    (["--stage", "pt", "--init-from-ist", "x", "--init-from-peft", "y"], r"give one of --init-from-ist, --init-from-peft and --transfer"),
    (["--device", "tpu"], r"--device 'tpu'"),
]


@pytest.mark.parametrize("bad,match", BAD_OPTIONS, ids=[" ".join(b) for b, _ in BAD_OPTIONS])
def test_bad_options_are_named_before_anything_loads(tmp_path, no_model, monkeypatch, bad, match):
    monkeypatch.setattr(data, "load_tasks", lambda *a: pytest.fail("data was read before the check"))
    fails(["--run", str(tmp_path / "r"), "--stage", "ist", *bad] if "--stage" not in bad else
          ["--run", str(tmp_path / "r"), *bad], match)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(tmp_path, no_model):
    fails(["--run", str(tmp_path / "r"), "--device", "cuda"], r"--device cuda: this machine has no CUDA device")


def test_missing_folders_and_files_are_named(world, tmp_path, no_model):
    fails(args(world, "x", "--stage", "pt", "--data-dir", str(tmp_path / "nowhere")), r"--data-dir .*nowhere is not a folder")
    fails(args(world, "x", "--stage", "pt", "--tasks-file", str(tmp_path / "no.txt")), r"no task table at .*no.txt")


@pytest.mark.parametrize("table,match", [
    ("task\tmetric\ttype\nfirst-word\tEM\n", r"tasks.txt:2: expected 3 to 3 TAB-separated columns"),
    ("task\tmetric\ttype\nfirst-word\tBLEU\tnoncls\n", r"tasks.txt:2: unknown metric 'BLEU'"),
    ("task\tmetric\ttype\nfirst-word\tEM\tgen\n", r"tasks.txt:2: type of first-word is 'gen'"),
    ("task\tmetric\ttype\nfirst-word\tEM\tnoncls\nfirst-word\tEM\tnoncls\n", r"tasks.txt:3: task first-word is listed twice"),
    ("name\tmetric\n", r"tasks.txt: the first line must be the header"),
])
def test_a_malformed_task_table_is_named_with_its_line(world, tmp_path, no_model, table, match):
    (tmp_path / "tasks.txt").write_text(table)
    fails(args(world, "x", "--stage", "pt", "--task", "first-word", "--tasks-file", str(tmp_path / "tasks.txt")), match)


def test_a_data_file_that_is_not_utf8_is_named_before_the_model_loads(world, tmp_path, no_model):
    import shutil
    shutil.copytree(world / "data", tmp_path / "data")
    bad = data.task_file(tmp_path / "data", "first-word", "dev")
    bad.write_bytes(bad.read_bytes() + "words: caf\u00e9\tcaf\u00e9\n".encode("latin-1"))
    fails(args(world, "x", "--stage", "pt", "--task", "first-word", "--data-dir", str(tmp_path / "data")),
          r"first-word_16_100_dev.tsv:9: not UTF-8 .*re-save the file as UTF-8")


def test_max_input_len_that_leaves_no_room_beside_the_answer_marker_is_refused(world):
    """A decoder-only model's inputs end with '\\nAnswer:': a cut shorter than it is an error, not
    a negative slice."""
    from transformers import T5Tokenizer
    tokenizer = T5Tokenizer.from_pretrained(world / "model")
    marker = len(tokenizer(data.CAUSAL_ANSWER, add_special_tokens=False)["input_ids"])
    tasks = data.load_tasks(world / "tasks.txt")
    for cut in (1, marker):
        cfg = train.Config(data_dir=str(world / "data"), max_input_len=cut)
        with pytest.raises(data.UserError, match=rf"--max-input-len {cut} leaves no room .*at least {marker + 1}"):
            data.prepare(cfg, ["first-word"], tasks, tokenizer, causal=True)
    cfg = train.Config(data_dir=str(world / "data"), max_input_len=marker + 1)
    rows = data.prepare(cfg, ["first-word"], tasks, tokenizer, causal=True)[0]["train"]
    assert all(len(x) == marker + 1 for x, _ in rows)


def test_evaluate_compare_names_file_and_line(tmp_path):
    cases = {"no-test.tsv": ("task\tmetric\tdev\nfirst-word\tEM\t0.5\n", r"no-test.tsv:1: no column 'test'"),
             "bad-value.tsv": ("task\ttest\nfirst-word\t0.5\nlast-word\toops\n", r"bad-value.tsv:3: expected a number"),
             "short-row.tsv": ("task\tmetric\ttest\nfirst-word\tEM\n", r"short-row.tsv:2: expected a number"),
             "empty.tsv": ("", r"empty.tsv holds no task's score"),
             "header-only.tsv": ("task\ttest\n", r"header-only.tsv holds no task's score.*re-run the stage")}
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SystemExit, match=match):
            evaluate.main(["compare", str(tmp_path / name)])


def test_data_check_names_a_missing_task_table(tmp_path):
    with pytest.raises(SystemExit, match=r"no task table at .*absent.txt"):
        data.main(["check", "--data-dir", str(tmp_path), "--tasks-file", str(tmp_path / "absent.txt")])


# --- what earlier stages left on disk: checked before the model loads ---------------------------

def test_ist_checks_its_subspace_before_loading_the_model(world, no_model):
    fails(args(world, "empty", "--stage", "ist", "--task", "has-cat"), r"no MSF subspace at .*msf-d3: make it with")
    fails(args(world, "empty", "--stage", "pt", "--task", "has-cat", "--init-from-ist", str(world / "nothing")),
          r"no finished IST run at .*nothing")


def test_msf_checks_its_prompts_before_loading_the_model(world, no_model):
    fails(args(world, "empty", "--stage", "msf"), r"msf needs the PT prompt of every task it reads; 3 missing")


def damage(path, how):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:
        path.write_bytes(b"\x00garbage" * 40)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_a_damaged_autoencoder_is_named_before_the_model_loads(world, tmp_path, no_model, how):
    import shutil
    shutil.copytree(world / "runs" / "base", tmp_path / "run")
    damage(tmp_path / "run" / "msf-d3" / "autoencoder.safetensors", how)
    argv = args(world, "x", "--stage", "ist", "--task", "has-cat")
    argv[argv.index("--run") + 1] = str(tmp_path / "run")
    fails(argv, r"msf-d3/autoencoder.safetensors is damaged \(.*\): train the subspace again: delete .*msf-d3")


def test_a_damaged_stored_prompt_is_named(world, tmp_path, no_model):
    import shutil
    shutil.copytree(world / "runs" / "base", tmp_path / "run")
    damage(tmp_path / "run" / "prompts-s100" / "last-word.safetensors", "garbage")
    argv = args(world, "x", "--stage", "msf", "--intrinsic-dim", "2")
    argv[argv.index("--run") + 1] = str(tmp_path / "run")
    fails(argv, r"prompts-s100/last-word.safetensors is damaged .*prompt-tune that task again")


@pytest.mark.slow
def test_a_damaged_z_file_is_named_before_stage_two_loads_the_model(world, monkeypatch):
    train.main(args(world, "base", "--stage", "ist", "--task", "has-cat", "--steps", "10"))
    z = world / "runs" / "base" / "ist-d3-s100-has-cat" / "z.safetensors"
    good = z.read_bytes()
    damage(z, "truncated")
    try:
        monkeypatch.setattr(plm, "load", lambda *a: pytest.fail("model loaded before the check"))
        fails(args(world, "base", "--stage", "pt", "--task", "has-cat", "--init-from-ist", str(z.parent)),
              r"z.safetensors is damaged .*run that IST stage again")
    finally:
        z.write_bytes(good)


def interrupt_after(monkeypatch, n):
    """Make the n-th training checkpoint save raise KeyboardInterrupt (after writing it)."""
    saves, real = [], checkpoint.save

    def save(path, tensors, **meta):
        real(path, tensors, **meta)
        if path.name == "checkpoint.safetensors":
            saves.append(path)
            if len(saves) == n:
                raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint, "save", save)
    return real


@pytest.mark.slow
def test_a_truncated_checkpoint_met_on_resume_names_the_way_back(world, monkeypatch):
    real = interrupt_after(monkeypatch, 3)
    with pytest.raises(SystemExit, match="interrupted"):
        train.main(args(world, "trunc", "--stage", "pt", "--task", "first-word"))
    monkeypatch.setattr(checkpoint, "save", real)
    out = world / "runs" / "trunc" / "pt-s100-first-word"
    damage(out / "checkpoint.safetensors", "truncated")
    fails(args(world, "trunc", "--stage", "pt", "--task", "first-word"),
          r"checkpoint.safetensors is damaged .*delete it to restart this stage from scratch, "
          r"or move checkpoint.prev.safetensors \(the evaluation before\) in its place")
    # taking the way back: the previous checkpoint resumes to the uninterrupted result
    os.replace(out / "checkpoint.prev.safetensors", out / "checkpoint.safetensors")
    train.main(args(world, "trunc", "--stage", "pt", "--task", "first-word"))
    train.main(args(world, "whole", "--stage", "pt", "--task", "first-word"))
    assert results(out / "results.tsv") == results(world / "runs" / "whole" / "pt-s100-first-word" / "results.tsv")


# --- faults of the machine: a second process, a failing disk, a power cut -----------------------

def test_a_second_process_on_the_same_stage_folder_is_refused(world, no_model):
    folder = world / "runs" / "locked" / "pt-s100-first-word"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time, checkpoint\n"
                               f"lock = checkpoint.Lock({str(folder)!r}).__enter__()\nprint('held', flush=True)\n"
                               "time.sleep(60)"], cwd=data.HERE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        fails(args(world, "locked", "--stage", "pt", "--task", "first-word"),
              rf"pt-s100-first-word is in use by pid {holder.pid} on .* since .*Wait for it")
    finally:
        holder.kill()
        holder.wait()
    with checkpoint.Lock(folder):                          # the kernel dropped it with the process
        pass


def test_a_failing_write_keeps_the_previous_checkpoint(world, monkeypatch):
    real = checkpoint.save_file
    writes = []

    def disk_full_on_second(tensors, path, metadata=None):
        writes.append(path)
        if len(writes) == 2:
            real(tensors, path, metadata=metadata)          # part of the file gets written, then the disk fills
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(tensors, path, metadata=metadata)
    monkeypatch.setattr(checkpoint, "save_file", disk_full_on_second)
    fails(args(world, "full", "--stage", "pt", "--task", "first-word", "--steps", "30"),
          r"could not write .*checkpoint.safetensors: No space left on device; the previous version is intact")
    out = world / "runs" / "full" / "pt-s100-first-word"
    _, meta = checkpoint.load(out / "checkpoint.safetensors")
    assert meta["loop"]["step"] == 10 and not (out / "checkpoint.safetensors.tmp").exists()
    monkeypatch.setattr(checkpoint, "save_file", real)
    train.main(args(world, "full", "--stage", "pt", "--task", "first-word", "--steps", "30"))
    train.main(args(world, "full-ref", "--stage", "pt", "--task", "first-word", "--steps", "30"))
    assert results(out / "results.tsv") == results(world / "runs" / "full-ref" / "pt-s100-first-word" / "results.tsv")


def test_writes_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events, real_fsync, real_replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b))
    target = tmp_path / "c.safetensors"
    checkpoint.save(target, {"x": torch.ones(2)})
    assert events == [("fsync", str(target) + ".tmp"), ("replace", str(target)), ("fsync", str(tmp_path))]
    assert torch.equal(checkpoint.load(target)[0]["x"], torch.ones(2))


def test_changed_data_is_refused_on_resume(world, monkeypatch, tmp_path):
    import shutil
    shutil.copytree(world / "data", tmp_path / "data")
    argv = args(world, "drift", "--stage", "pt", "--task", "has-cat", "--data-dir", str(tmp_path / "data"))
    real = interrupt_after(monkeypatch, 1)
    with pytest.raises(SystemExit, match="interrupted"):
        train.main(argv)
    monkeypatch.setattr(checkpoint, "save", real)
    dev = data.task_file(tmp_path / "data", "has-cat", "dev")
    dev.write_text(dev.read_text().replace("\tyes", "\tno", 1))
    fails(argv, r"the data of has-cat in .* changed since .*pt-s100-has-cat was started; delete")
    config = json.loads((world / "runs" / "drift" / "pt-s100-has-cat" / "config.json").read_text())
    assert set(config["data"]) == {"has-cat"}


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_result(world):
    import time
    argv = args(world, "killed", "--stage", "pt", "--task", "last-word", steps=200)
    proc = subprocess.Popen([sys.executable, "train.py", *argv], cwd=data.HERE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = world / "runs" / "killed" / "pt-s100-last-word" / "metrics.jsonl"
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    proc.kill()                                              # SIGKILL: no handler, no clean-up
    proc.wait()
    assert not (log.parent / "results.tsv").exists(), "the run finished before it could be killed"
    train.main(argv)                                         # the lock died with the process
    train.main(args(world, "unkilled", "--stage", "pt", "--task", "last-word", steps=200))
    assert results(log.parent / "results.tsv") == results(
        world / "runs" / "unkilled" / "pt-s100-last-word" / "results.tsv")
    a = checkpoint.load(world / "runs" / "killed" / "prompts-s100" / "last-word.safetensors")[0]["prompt"]
    b = checkpoint.load(world / "runs" / "unkilled" / "prompts-s100" / "last-word.safetensors")[0]["prompt"]
    assert torch.equal(a, b)


def test_a_model_path_that_does_not_exist_is_named(world, tmp_path):
    fails(args(world, "x", "--stage", "pt", "--task", "first-word", "--model", str(tmp_path / "nowhere")),
          r"--model .*nowhere: no such folder")


def test_ist_names_the_missing_subspace_even_when_the_model_is_unreachable(world, monkeypatch):
    monkeypatch.setattr(plm, "model_config", lambda cfg: pytest.fail("the model's config was read first"))
    fails(args(world, "empty", "--stage", "ist", "--task", "has-cat"), r"no MSF subspace at")


def test_data_check_names_a_missing_data_folder(tmp_path):
    with pytest.raises(SystemExit, match=r"--data-dir .*absent is not a folder"):
        data.main(["check", "--data-dir", str(tmp_path / "absent")])


@pytest.mark.parametrize("name", ["adamw", "adafactor"])
def test_optimizer_state_survives_a_checkpoint_exactly(name, tmp_path):
    """Saved after 3 steps and restored into a fresh optimiser, the next steps are bit-identical
    to those of the optimiser never interrupted (Adafactor's step count is a plain number)."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 6)), torch.nn.Parameter(torch.randn(5))]
    cfg = train.Config(optimizer=name, lr=0.3)
    grads = [[torch.randn_like(p) for p in params] for _ in range(5)]

    def steps(opt, ps, which):
        for i in which:
            for p, g in zip(ps, grads[i]):
                p.grad = g.clone()
            opt.step()

    first = trainstep.make_optimizer(cfg, params)
    steps(first, params, range(3))
    checkpoint.save(tmp_path / "c.safetensors", checkpoint.optimizer_tensors(first))
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    second = trainstep.make_optimizer(cfg, copies)
    checkpoint.restore_optimizer(second, checkpoint.load(tmp_path / "c.safetensors")[0])
    steps(first, params, range(3, 5))
    steps(second, copies, range(3, 5))
    assert all(torch.equal(a, b) for a, b in zip(params, copies))
