"""End to end on a tiny T5 and a handful of tiny tasks: pt -> msf -> ist (and ft, stage two),
best-dev selection, resumption after an interruption, and the errors a user can hit."""
import json
import math
import random

from pathlib import Path

import pytest
import torch

import checkpoint
import data
import plm
import stages
import train
import trainstep
from conftest import REAL, needs, tiny_t5

WORDS = "red blue green cat dog sun moon tree fish bird".split()
TASKS = {  # name: (metric, type, rule)
    "first-word": ("EM", "noncls", lambda ws: ws[0]),
    "last-word": ("EM", "noncls", lambda ws: ws[-1]),
    "has-cat": ("ACC", "cls", lambda ws: "yes" if "cat" in ws else "no"),
    "second-word": ("EM", "noncls", lambda ws: ws[1]),
}


def make_world(root):
    rng = random.Random(0)
    for name, (metric, kind, rule) in TASKS.items():
        for seed in data.SEEDS:
            for split, n in (("train", 16), ("dev", 8), ("test", 12)):
                lines = []
                for _ in range(n):
                    ws = [rng.choice(WORDS) for _ in range(4)]
                    lines.append(f"words: {' '.join(ws)}\t{rule(ws)}")
                path = data.task_file(root / "data", name, split, 16, seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("\n".join(lines) + "\n")
    (root / "tasks.txt").write_text("task\tmetric\ttype\n" + "".join(
        f"{n}\t{m}\t{k}\n" for n, (m, k, _) in TASKS.items()) + "absent\tEM\tnoncls\n")
    (root / "split.txt").write_text("[train]\nfirst-word\nlast-word\nhas-cat\n[test]\nsecond-word\n")
    (root / "split-missing.txt").write_text("[train]\nfirst-word\nabsent\n[test]\nsecond-word\n")
    tokenizer = data.train_tokenizer([f"words: {' '.join(WORDS)} yes no"] * 50, 40, root / "model")
    t5 = tiny_t5(seed=3, vocab=len(tokenizer), d_model=16)
    t5.save_pretrained(root / "model")
    return root


def args(world, run, *extra, steps=40):
    return ["--run", str(world / "runs" / run), "--model", str(world / "model"), "--data-dir", str(world / "data"),
            "--tasks-file", str(world / "tasks.txt"), "--split", str(world / "split.txt"), "--prompt-len", "4",
            "--steps", str(steps), "--eval-every", "10", "--batch-size", "4", "--intrinsic-dim", "3", *extra]


def results(path):
    lines = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    return {r[0]: dict(zip(lines[0], r)) for r in lines[1:]}


def metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def pipeline(world):
    """pt on every task (its checkpoint kept), msf on the training tasks, ist on the unseen task."""
    train.main(args(world, "main", "--stage", "pt", "--keep-checkpoints"))
    train.main(args(world, "main", "--stage", "msf"))
    train.main(args(world, "main", "--stage", "ist", "--tasks-from", "test"))
    return world / "runs" / "main"


@pytest.mark.slow
def test_pipeline_writes_every_output(pipeline):
    pt, msf, ist = pipeline / "pt-s100-default", pipeline / "msf-d3", pipeline / "ist-d3-s100-test"
    for stage in (pt, msf, ist):
        for name in ("config.json", "metrics.jsonl", "results.tsv"):
            assert (stage / name).is_file(), stage / name
    for stage in (msf, ist):                   # finished: only what later stages and the report read stays
        assert not list(stage.glob("checkpoint*")), list(stage.glob("checkpoint*"))
    assert (pt / "checkpoint.safetensors").is_file() and (pt / "checkpoint.prev.safetensors").is_file()
    assert set(results(pt / "results.tsv")) == set(TASKS)
    assert set(results(msf / "results.tsv")) == {"first-word", "last-word", "has-cat"}
    assert set(results(ist / "results.tsv")) == {"second-word"}
    assert sorted(p.stem for p in (pipeline / "prompts-s100").iterdir()) == sorted(TASKS)
    z, meta = checkpoint.load(ist / "z.safetensors")
    assert z["second-word"].shape == (3,) and meta["autoencoder"].endswith("msf-d3/autoencoder.safetensors")
    tensors, _ = checkpoint.load(pt / "checkpoint.safetensors")
    assert not any("shared" in n or "encoder" in n for n in tensors)   # only what trained
    assert tensors["param.prompts.0"].shape == (4, 16)


@pytest.mark.slow
def test_reconstruct_scores_the_autoencoder_on_stored_prompts_without_training(pipeline, world):
    """On MSF's own training tasks, reconstruct applies the same best-dev autoencoder to the same
    prompts as MSF's final test: the known answer is MSF's test column, to the digit."""
    train.main(args(world, "main", "--stage", "reconstruct", "--tasks-from", "train"))
    train.main(args(world, "main", "--stage", "reconstruct"))                  # default: the held-out tasks
    rec, msf = results(pipeline / "reconstruct-d3-s100-train" / "results.tsv"), results(pipeline / "msf-d3" / "results.tsv")
    assert {t: r["test"] for t, r in rec.items()} == {t: r["test"] for t, r in msf.items()}
    assert set(results(pipeline / "reconstruct-d3-s100-default" / "results.tsv")) == {"second-word"}
    assert not (pipeline / "reconstruct-d3-s100-train" / "checkpoint.safetensors").exists()   # nothing trained


@pytest.mark.slow
def test_training_loss_falls(pipeline):
    # A random tiny T5 is hard to steer with 4 prompt vectors (the decoder barely reads the
    # encoder), so PT's fall is small here; the demo's pretrained model shows the real thing.
    for stage, factor in (("pt-s100-default", 0.99), ("msf-d3", 0.98)):
        log = metrics(pipeline / stage / "metrics.jsonl")
        assert log[-1]["loss"] < factor * log[0]["loss"], (stage, log[0]["loss"], log[-1]["loss"])


@pytest.mark.slow
def test_best_dev_is_selected_and_reported(pipeline):
    stage = pipeline / "pt-s100-default"
    log = metrics(stage / "metrics.jsonl")
    for task, row in results(stage / "results.tsv").items():
        history = [(r["dev"][task], r["step"]) for r in log if task in r["dev"]]
        best = max(v for v, _ in history)
        assert float(row["dev"]) == pytest.approx(best, abs=1e-4)
        assert int(row["best_step"]) == next(s for v, s in history if v == best)   # first of the best
    # the saved prompt is the best-dev one, not the last
    tensors, meta = checkpoint.load(stage / "checkpoint.safetensors")
    prompt = checkpoint.load(pipeline / "prompts-s100" / "first-word.safetensors")[0]["prompt"]
    names = json.loads((stage / "config.json").read_text())["tasks"]
    assert torch.equal(prompt, tensors[f"best.prompts.{names.index('first-word')}"])


@pytest.mark.slow
def test_resume_after_interruption_reproduces_the_uninterrupted_run(world, monkeypatch):
    train.main(args(world, "whole", "--stage", "pt"))
    saves, real_save = [], checkpoint.save

    def interrupt_after_second_checkpoint(path, tensors, **meta):
        real_save(path, tensors, **meta)
        if path.name == "checkpoint.safetensors":
            saves.append(path)
            if len(saves) == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", interrupt_after_second_checkpoint)
    with pytest.raises(SystemExit, match="interrupted.*re-run the same command"):
        train.main(args(world, "cut", "--stage", "pt"))
    monkeypatch.setattr(checkpoint, "save", real_save)
    cut = world / "runs" / "cut" / "pt-s100-default"
    assert not (cut / "results.tsv").exists()
    train.main(args(world, "cut", "--stage", "pt"))
    whole = world / "runs" / "whole" / "pt-s100-default"
    assert results(cut / "results.tsv") == results(whole / "results.tsv")
    for task in TASKS:
        a = checkpoint.load(world / "runs" / "cut" / "prompts-s100" / f"{task}.safetensors")[0]["prompt"]
        b = checkpoint.load(world / "runs" / "whole" / "prompts-s100" / f"{task}.safetensors")[0]["prompt"]
        assert torch.equal(a, b)
    train.main(args(world, "cut", "--stage", "pt"))                   # finished: skipped, unchanged
    assert results(cut / "results.tsv") == results(whole / "results.tsv")


@pytest.mark.slow
def test_a_task_trains_the_same_alone_or_with_others(world):
    """Own init stream, own batches, own Adam state, own clipping: batch-mates change nothing
    but the padding, so the prompt after 40 steps agrees to float rounding."""
    train.main(args(world, "solo", "--stage", "pt", "--task", "last-word", "--keep-checkpoints"))
    train.main(args(world, "many", "--stage", "pt", "--tasks-from", "train", "--keep-checkpoints"))
    solo = checkpoint.load(world / "runs" / "solo" / "pt-s100-last-word" / "checkpoint.safetensors")[0]
    many = checkpoint.load(world / "runs" / "many" / "pt-s100-train" / "checkpoint.safetensors")[0]
    k = json.loads((world / "runs" / "many" / "pt-s100-train" / "config.json").read_text())["tasks"].index("last-word")
    torch.testing.assert_close(solo["param.prompts.0"], many[f"param.prompts.{k}"], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_msf_refuses_a_split_with_missing_prompts(world, capsys):
    train.main(args(world, "partial", "--stage", "pt", "--task", "first-word"))
    with pytest.raises(SystemExit, match=r"msf needs the PT prompt.*1 missing.*last-word|has-cat"):
        train.main(args(world, "partial", "--stage", "msf"))


@pytest.mark.slow
def test_ist_without_msf_names_the_command(world):
    with pytest.raises(SystemExit, match=r"no MSF subspace at .*msf-d3: make it with `make msf DIM=3"):
        train.main(args(world, "nothing", "--stage", "ist", "--task", "has-cat"))


@pytest.mark.slow
def test_ist_and_reconstruct_use_the_msf_draw_they_name(pipeline, world):
    """Another MSF draw (--seed 43) sits beside the default; --msf-seed 43 makes IST and reconstruct
    read it and write their own folders, and a missing draw names the command that makes it."""
    ist = args(world, "main", "--stage", "ist", "--task", "has-cat", "--msf-seed", "43")
    with pytest.raises(SystemExit, match=r"msf-d3-seed43: make it with .* --seed 43 --prompt-store \S+prompts-s100$"):
        train.main(ist)
    train.main(args(world, "main", "--stage", "msf", "--seed", "43", "--prompt-store", str(pipeline / "prompts-s100"),
                    steps=10))
    train.main(ist)
    train.main(args(world, "main", "--stage", "reconstruct", "--task", "has-cat", "--msf-seed", "43"))
    _, meta = checkpoint.load(pipeline / "ist-d3-s100-has-cat-msf43" / "z.safetensors")
    assert Path(meta["autoencoder"]).parent.name == "msf-d3-seed43"
    assert (pipeline / "reconstruct-d3-s100-has-cat-msf43" / "results.tsv").is_file()
    with pytest.raises(SystemExit, match="--msf-seed chooses the MSF subspace"):
        train.main(args(world, "main", "--stage", "pt", "--msf-seed", "43"))


@pytest.mark.slow
def test_ist_single_task_and_random_subspace(pipeline, world):
    train.main(args(world, "main", "--stage", "ist", "--task", "has-cat"))
    train.main(args(world, "main", "--stage", "ist", "--task", "has-cat", "--subspace", "random"))
    assert (pipeline / "ist-d3-s100-has-cat" / "results.tsv").is_file()
    assert (pipeline / "ist-random-d3-s100-has-cat" / "results.tsv").is_file()


@pytest.mark.slow
def test_ist_through_the_linear_span_of_the_training_prompts(pipeline, world):
    """--subspace pca: P̄ + U z from the split's training tasks' PT prompts; only z trains; stage two
    starts from the MSF subspace only."""
    train.main(args(world, "main", "--stage", "ist", "--subspace", "pca", "--tasks-from", "train,test"))
    out = pipeline / "ist-pca-d3-s100-train+test"
    assert set(results(out / "results.tsv")) == set(TASKS)
    z, meta = checkpoint.load(out / "z.safetensors")
    assert meta["autoencoder"] == "pca" and z["second-word"].shape == (3,)
    with pytest.raises(SystemExit, match="not the pca one"):
        train.main(args(world, "main", "--stage", "pt", "--task", "second-word", "--init-from-ist", str(out)))
    with pytest.raises(SystemExit, match="at most 3 directions"):                # 3 training tasks
        train.main(args(world, "main", "--stage", "ist", "--subspace", "pca", "--intrinsic-dim", "4"))


def spy_start(monkeypatch):
    """Make PT's setup record the prompts a run starts from: -> {"prompts": (K, P, H)} once it runs."""
    start, real = {}, stages.SETUPS["pt"]

    def spy(*a, **k):
        stage = real(*a, **k)
        start["prompts"] = torch.stack([p.detach().clone() for p in stage.module.prompts])
        return stage
    monkeypatch.setitem(stages.SETUPS, "pt", spy)
    return start


@pytest.mark.slow
def test_stage_two_starts_exactly_at_ist_solution(pipeline, world, monkeypatch):
    """§4.3's stage two: PT from --init-from-ist begins at Proj_b(z_best) of that IST run, bit for
    bit, and its evaluation of the start (step 0) scores IST's best dev score."""
    ist, start = pipeline / "ist-d3-s100-test", spy_start(monkeypatch)
    train.main(args(world, "main", "--stage", "pt", "--tasks-from", "test", "--steps", "10", "--init-from-ist", str(ist)))
    z, meta = checkpoint.load(ist / "z.safetensors")
    ae, _ = stages.load_autoencoder(meta["autoencoder"])
    assert torch.equal(start["prompts"], ae.decode(z["second-word"][None]))
    log = metrics(pipeline / "pt-from-ist-d3-s100-test" / "metrics.jsonl")
    assert [r["step"] for r in log] == [0, 10]
    ist_best = max(r["dev"]["second-word"] for r in metrics(ist / "metrics.jsonl"))
    assert log[0]["dev"]["second-word"] == ist_best


@pytest.mark.slow
def test_did_baseline_trains_only_its_numbers_one_task_at_a_time(world):
    train.main(args(world, "did", "--stage", "did", "--tasks-from", "train", "--steps", "20", "--lr", "0.2",
                    "--keep-checkpoints"))
    out = world / "runs" / "did" / "did-d3-s100-train"
    for task in ("first-word", "last-word", "has-cat"):
        tensors, _ = checkpoint.load(out / task / "checkpoint.safetensors")
        assert set(n for n in tensors if n.startswith("param.")) == {"param.z"} and tensors["param.z"].shape == (3,)
        log = metrics(out / task / "metrics.jsonl")
        assert log[-1]["loss"] < log[0]["loss"]


@pytest.mark.slow
def test_full_fine_tuning_baseline(world):
    train.main(args(world, "ft", "--stage", "ft", "--task", "first-word", "--steps", "20", "--lr", "0.01"))
    out = world / "runs" / "ft" / "ft-s100-first-word" / "first-word"
    assert set(results(out / "results.tsv")) == {"first-word"}
    log = metrics(out / "metrics.jsonl")
    assert log[-1]["loss"] < log[0]["loss"]


def test_missing_tasks_are_loud_unless_allowed(world):
    with pytest.raises(SystemExit, match=r"(?s)1 of 2 tasks have no data.*absent.*--allow-missing"):
        train.main(args(world, "m", "--stage", "pt", "--split", str(world / "split-missing.txt"), "--tasks-from", "train"))
    train.main(args(world, "m", "--stage", "pt", "--split", str(world / "split-missing.txt"), "--tasks-from", "train",
                    "--allow-missing", "--steps", "10"))
    text = (world / "runs" / "m" / "pt-s100-train" / "results.tsv").read_text()
    assert "# missing (no data, not trained): absent" in text


def test_nan_loss_stops_with_advice(world, monkeypatch):
    real = trainstep.ipt.token_losses
    monkeypatch.setattr(trainstep.ipt, "token_losses", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(SystemExit, match=r"loss is nan in steps 1–10 \(tasks first-word…\)\. Lower --lr"):
        train.main(args(world, "nan", "--stage", "pt", "--task", "first-word"))
    assert not (world / "runs" / "nan" / "pt-s100-first-word" / "checkpoint.safetensors").exists()   # nothing saved


def test_unknown_task_and_bad_options(world):
    with pytest.raises(SystemExit, match=r"unknown task 'frist-word'.*first-word"):
        train.main(args(world, "x", "--stage", "pt", "--task", "frist-word"))
    with pytest.raises(SystemExit, match=r"unknown --stage 'pq'"):
        train.main(args(world, "x", "--stage", "pq"))
    with pytest.raises(SystemExit, match=r"--model .*nowhere: no such folder"):
        train.main(args(world, "x", "--stage", "pt", "--task", "first-word", "--model", str(world / "nowhere")))


def test_a_changed_setting_does_not_resume_a_different_run(world):
    train.main(args(world, "cfg", "--stage", "pt", "--task", "has-cat", "--steps", "10"))
    (world / "runs" / "cfg" / "pt-s100-has-cat" / "results.tsv").unlink()
    with pytest.raises(SystemExit, match="holds a run with other settings"):
        train.main(args(world, "cfg", "--stage", "pt", "--task", "has-cat", "--steps", "10", "--lr", "0.01"))


def test_a_run_made_before_an_option_existed_is_the_same_run(world, capsys):
    """A config.json without an option added since (it ran at the option's default) still counts
    as this run: finished stays finished, an unfinished one resumes."""
    argv = args(world, "older", "--stage", "pt", "--task", "has-cat", "--steps", "10")
    train.main(argv)
    saved = world / "runs" / "older" / "pt-s100-has-cat" / "config.json"
    config = json.loads(saved.read_text())
    del config["optimizer"], config["eval"]
    saved.write_text(json.dumps(config))
    train.main(argv)
    assert "is finished (results.tsv); skipping" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="holds a run with other settings"):
        train.main([*argv, "--optimizer", "adafactor"])


def test_checkpoint_that_does_not_fit_is_explained(world, pipeline):
    with pytest.raises(SystemExit, match=r"msf-d3 was trained for prompts 4×16, this run has 6×16"):
        train.main(args(world, "main", "--stage", "ist", "--task", "first-word", "--prompt-len", "6"))


def test_help_documents_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = capsys.readouterr().out
    for f in train.fields(train.Config):
        assert "--" + f.name.replace("_", "-") in text
    assert "(default: 0.06)" in text


REAL_TASKS = ["glue-sst2", "ag_news", "lama-trex", "quarel"]


@pytest.mark.slow
@needs(REAL.is_dir(), f"the real CrossFit files at {REAL}")
def test_pipeline_on_real_crossfit_files_with_a_tiny_local_model(tmp_path):
    """pt -> msf -> ist (and `--task`) on real files, through the same commands as `make`."""
    texts = [ex.input + " " + " ".join(ex.references) for t in REAL_TASKS
             for ex in data.read_examples(data.task_file(REAL, t, "train"))]
    tokenizer = data.train_tokenizer(texts, 400, tmp_path / "model")
    tiny_t5(seed=4, vocab=len(tokenizer), d_model=16).save_pretrained(tmp_path / "model")
    (tmp_path / "split.txt").write_text("[train]\nglue-sst2\nag_news\nlama-trex\n[test]\nquarel\n")
    common = ["--run", str(tmp_path / "run"), "--model", str(tmp_path / "model"), "--data-dir", str(REAL),
              "--split", str(tmp_path / "split.txt"), "--prompt-len", "4", "--intrinsic-dim", "2", "--steps", "6",
              "--eval-every", "3", "--batch-size", "2", "--max-test", "20", "--max-input-len", "64"]
    train.main(common + ["--stage", "pt"])
    train.main(common + ["--stage", "msf"])
    train.main(common + ["--stage", "ist", "--tasks-from", "test"])
    train.main(common + ["--stage", "ist", "--task", "glue-sst2"])
    run = tmp_path / "run"
    assert set(results(run / "pt-s100-default" / "results.tsv")) == set(REAL_TASKS)
    assert set(results(run / "msf-d2" / "results.tsv")) == set(REAL_TASKS[:3])
    ist = results(run / "ist-d2-s100-test" / "results.tsv")
    assert set(ist) == {"quarel"} and 0.0 <= float(ist["quarel"]["test"]) <= 1.0
    assert (run / "ist-d2-s100-glue-sst2" / "z.safetensors").is_file()


def test_patience_stops_a_task_and_frees_its_rows(world):
    """The random tiny T5 never improves on dev after the first evaluation, so with patience 1
    every task stops at the second evaluation (step 20 of 40) and later steps have no rows."""
    train.main(args(world, "patience", "--stage", "pt", "--tasks-from", "train", "--patience", "1"))
    out = world / "runs" / "patience" / "pt-s100-train"
    rows = results(out / "results.tsv")
    log = metrics(out / "metrics.jsonl")
    for row in rows.values():
        history = [r["dev"] for r in log if row["task"] in r["dev"]]
        assert int(row["steps"]) == 10 * len(history) < 40
    assert log[-1]["step"] < 40 or log[-1]["active"] < 3


def test_fine_tuning_gives_each_task_a_fresh_t5(world, monkeypatch):
    """One load for the first task, then a reload for each task after one that trained."""
    loads, real = [], train.plm.load
    monkeypatch.setattr(train.plm, "load", lambda *a: loads.append(1) or real(*a))
    train.main(args(world, "ft3", "--stage", "ft", "--tasks-from", "train", "--steps", "2", "--eval-every", "2"))
    assert len(loads) == 3
    for task in ("first-word", "last-word", "has-cat"):
        assert (world / "runs" / "ft3" / "ft-s100-train" / task / "results.tsv").is_file()


@pytest.mark.slow
def test_every_stage_runs_on_a_decoder_only_model(world, tmp_path):
    """train.py picks the decoder-only path from the model's config: pt, msf, ist (seen and
    unseen), reconstruct, stage two and fine-tuning all run on a tiny Llama."""
    from conftest import tiny_llama
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(world / "model")
    tiny_llama(seed=5, vocab=len(tokenizer)).save_pretrained(tmp_path / "llama")
    tokenizer.save_pretrained(tmp_path / "llama")
    run = lambda *extra: train.main([*args(world, "llama", *extra, steps=20), "--model", str(tmp_path / "llama")])
    run("--stage", "pt")
    run("--stage", "msf")
    run("--stage", "ist", "--tasks-from", "train,test")
    run("--stage", "reconstruct")
    run("--stage", "pt", "--tasks-from", "test", "--init-from-ist", str(world / "runs" / "llama" / "ist-d3-s100-train+test"))
    run("--stage", "ft", "--task", "has-cat", "--lr", "0.01")
    out = world / "runs" / "llama"
    assert set(results(out / "ist-d3-s100-train+test" / "results.tsv")) == set(TASKS)
    assert set(results(out / "reconstruct-d3-s100-default" / "results.tsv")) == {"second-word"}
    assert checkpoint.load(out / "prompts-s100" / "has-cat.safetensors")[0]["prompt"].shape == (4, 16)
    ft_log = metrics(out / "ft-s100-has-cat" / "has-cat" / "metrics.jsonl")  # a random model moves when it all trains
    assert ft_log[-1]["loss"] < ft_log[0]["loss"]


@pytest.mark.slow
def test_bf16_autocast_runs_on_a_cpu(world):
    """--precision bf16 on a CPU (AMX where present): training and generation run, the loss is
    finite, and the trainable prompts stay fp32."""
    train.main(args(world, "bf16", "--stage", "pt", "--task", "has-cat", "--precision", "bf16", "--device", "cpu",
                    steps=10))
    log = metrics(world / "runs" / "bf16" / "pt-s100-has-cat" / "metrics.jsonl")
    assert all(math.isfinite(r["loss"]) for r in log)
    prompt = checkpoint.load(world / "runs" / "bf16" / "prompts-s100" / "has-cat.safetensors")[0]["prompt"]
    assert prompt.dtype == torch.float32


def test_a_seed_changes_initialisation_and_batch_order_not_the_data(world):
    """Table 4's runs differ by --seed: each task's initial prompt and z, and the order of its rows,
    change; the K-shot data (train, dev, test) stay the same; another seed's PT writes its own prompt store."""
    cfgs = [train.parse_args(args(world, "seeds", "--stage", "pt", "--tasks-from", "train", *s))
            for s in ([], ["--seed", "43"])]
    model, tokenizer = plm.load(cfgs[0], "cpu")
    names = ["first-word", "last-word"]
    tasks = data.load_tasks(world / "tasks.txt")
    prepared = [data.prepare(cfg, names, tasks, tokenizer, False) for cfg in cfgs]
    assert prepared[0] == prepared[1]
    prompts = [stages.setup_pt(cfg, model, tokenizer, names, p).module.prompts[0] for cfg, p in zip(cfgs, prepared)]
    z = [stages.setup_ist(cfg, model, tokenizer, names, p).module.z[0] for cfg, p in zip(cfgs, prepared)]
    assert not torch.equal(*prompts) and not torch.equal(*z)
    batchers = [data.TaskBatcher([t["train"] for t in p], 4, cfg.seed) for cfg, p in zip(cfgs, prepared)]
    orders = [b.order(0, 0, names[0]) for b in batchers]
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])
    assert stages.prompt_store(cfgs[0]) != stages.prompt_store(cfgs[1])
    assert stages.stage_dir(cfgs[0]) != stages.stage_dir(cfgs[1])
