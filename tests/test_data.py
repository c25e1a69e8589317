"""The task table, the splits, CrossFit files (with their errors), tokenisation and the batcher;
and, when ../shared/data/crossfit is present, every real file through the same code."""
import io
from collections import Counter

import pytest
import torch
from hypothesis import given, strategies as st

import data
from conftest import REAL, needs
from ipt import IGNORE

needs_real = needs(REAL.is_dir(), f"the real CrossFit files at {REAL}")
TASKS = data.load_tasks()


def test_task_table_has_the_papers_120_tasks():
    assert len(TASKS) == 120
    assert Counter(t.metric for t in TASKS.values()) == {
        "ACC": 40, "Classification-F1": 32, "EM": 28, "Rouge-L": 14, "QA-F1": 5, "Matthew-Correlation": 1}
    assert TASKS["glue-cola"].type == "cls" and TASKS["discovery"].type == "neither"


def test_paper_splits():
    random = data.load_split("random", TASKS)
    assert len(random["train"]) == 100 and len(random["test"]) == 20
    assert set(random["train"]) | set(random["test"]) == set(TASKS)
    assert all(TASKS[t].random_split == side for side in ("train", "test") for t in random[side])
    cls, noncls = data.load_split("cls", TASKS), data.load_split("non-cls", TASKS)
    assert [len(cls[s]) for s in ("train", "test_in", "test_out")] == [35, 8, 41]
    assert [len(noncls[s]) for s in ("train", "test_in", "test_out")] == [35, 41, 8]
    assert all(TASKS[t].type == "cls" for t in cls["train"] + cls["test_in"] + noncls["test_out"])
    assert all(TASKS[t].type == "noncls" for t in noncls["train"] + noncls["test_in"] + cls["test_out"])
    assert not set(cls["train"]) & set(cls["test_in"])
    previous = []
    for pct in (20, 40, 60, 80):                                       # nested, same unseen tasks
        ablation = data.load_split(f"random_{pct}", TASKS)
        assert len(ablation["train"]) == pct and ablation["train"][:len(previous)] == previous
        assert set(ablation["train"]) <= set(random["train"]) and ablation["test"] == random["test"]
        previous = ablation["train"]


def test_user_split_and_its_errors(tmp_path):
    good = tmp_path / "mine.txt"
    good.write_text("# my split\n[train]\nglue-sst2\nag_news\n\n[test]\nglue-rte\n")
    assert data.load_split(good, TASKS) == {"train": ["glue-sst2", "ag_news"], "test": ["glue-rte"]}
    bad = tmp_path / "bad.txt"
    bad.write_text("[train]\nglue-sst2\nglue-sts2\n")
    with pytest.raises(data.DataError, match=r"bad.txt:3: unknown task 'glue-sts2'.*glue-sst2"):
        data.load_split(bad, TASKS)
    with pytest.raises(data.DataError, match="no split 'nope'.*random"):
        data.load_split("nope", TASKS)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_read_examples_with_several_references(tmp_path):
    f = write(tmp_path / "t.tsv", "question: who? [SEP] x\tAda\tAda Lovelace\nsentence: ok\tpositive\n")
    assert data.read_examples(f) == [data.Example("question: who? [SEP] x", ("Ada", "Ada Lovelace")),
                                     data.Example("sentence: ok", ("positive",))]


@pytest.mark.parametrize("text, message", [
    ("a\tb\nno tab here\n", r"t.tsv:2: expected 'input<TAB>reference"),
    ("a\tb\n\tempty input\n", r"t.tsv:2: expected"),
    ("a\t\n", r"t.tsv:1: expected"),
    ("", r"t.tsv is empty"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, message):
    with pytest.raises(data.DataError, match=message):
        data.read_examples(write(tmp_path / "t.tsv", text))


def test_a_file_that_is_not_utf8_is_named_with_its_line(tmp_path):
    f = tmp_path / "t.tsv"
    f.write_bytes("a\tb\ncaf\u00e9\tb\n".encode("utf-8") + "na\u00efve\tb\n".encode("latin-1"))
    with pytest.raises(data.DataError, match=r"t.tsv:3: not UTF-8 \(byte 0xef at column 3\)"):
        data.read_examples(f)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(data.DataError, match=r"missing data file .*glue-sst2_16_100_train.tsv"):
        data.load_task_data(tmp_path, "glue-sst2")


def test_check_reports_present_missing_and_malformed(tmp_path):
    for split in data.SPLIT_FILES:
        write(data.task_file(tmp_path, "glue-sst2", split), "a\tpositive\nb\tnegative\nc\tpositive\n")
        write(data.task_file(tmp_path, "ag_news", split), "a\tWorld\noops\n")
    split = write(tmp_path / "s.txt", "[train]\nglue-sst2\nag_news\n[test]\nglue-rte\n")
    out = io.StringIO()
    assert data.check(tmp_path, split, TASKS, out=out) == 2
    report = out.getvalue()
    assert "glue-sst2" in report and " ok " in report and "  2 " in report   # 2 distinct labels
    assert "ag_news" in report and "malformed" in report and "ag_news_16_100_train.tsv:2" in report
    assert "1 of 3 tasks" in report and "missing (1): glue-rte" in report


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    texts = [f"sentence: the {w} film was {v} [SEP] label" for w in ("good", "bad", "long") for v in ("fun", "dull")] * 20
    return data.train_tokenizer(texts, 60, tmp_path_factory.mktemp("tok"))


def test_project_tokenizer_round_trips_and_reloads(tokenizer, tmp_path):
    from transformers import T5Tokenizer
    ids = tokenizer("the good film was fun").input_ids
    assert ids[-1] == tokenizer.eos_token_id == 1 and tokenizer.pad_token_id == 0
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the good film was fun"
    tokenizer.save_pretrained(tmp_path)
    assert T5Tokenizer.from_pretrained(tmp_path)("the good film was fun").input_ids == ids


@given(max_len=st.integers(2, 12))
def test_truncation_keeps_the_final_eos(tokenizer, max_len):
    text = "sentence: the good film was fun [SEP] label " * 3
    full = data.tokenize(tokenizer, [text], 10_000)[0]
    cut = data.tokenize(tokenizer, [text], max_len)[0]
    assert len(cut) == min(max_len, len(full)) and cut[-1] == tokenizer.eos_token_id
    assert cut[:-1] == full[:len(cut) - 1]


@given(max_len=st.integers(3, 12))
def test_a_decoder_only_input_keeps_its_answer_boundary_when_cut(tokenizer, max_len):
    """[x; "\nAnswer:"] cut to max_len keeps the boundary, so the target always follows it."""
    end = tokenizer(data.CAUSAL_ANSWER, add_special_tokens=False)["input_ids"]
    text = "sentence: the good film was fun " * 3
    cut = data.tokenize(tokenizer, [text], max_len + len(end), end)[0]
    assert cut[-len(end):] == end and len(cut) == max_len + len(end)
    assert cut[:max_len] == tokenizer(text, add_special_tokens=False)["input_ids"][:max_len]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 6), st.integers(1, 4)), min_size=1, max_size=6))
def test_collate_pads_dynamically(spec):
    rows = [(k, list(range(2, 2 + t)), list(range(5, 5 + l))) for k, t, l in spec]
    batch = data.collate(rows, pad_id=0)
    T, L = max(t for _, t, _ in spec), max(l for _, _, l in spec)
    assert batch.input_ids.shape == batch.attention_mask.shape == (len(rows), T)
    assert batch.labels.shape == (len(rows), L)
    assert batch.attention_mask.sum(1).tolist() == [t for _, t, _ in spec]
    assert ((batch.labels != IGNORE).sum(1)).tolist() == [l for _, _, l in spec]
    assert batch.task_idx.tolist() == [k for k, _, _ in spec]


@given(n=st.integers(1, 9), b=st.integers(1, 5), seed=st.integers(0, 2**20), steps=st.integers(1, 6))
def test_batcher_streams_are_per_task_and_cover_each_epoch(n, b, seed, steps):
    rows = [[([i], [i]) for i in range(n)], [([100 + i], [1]) for i in range(7)]]
    names = ["task-a", "task-b"]
    both = data.TaskBatcher(rows, b, seed)
    alone = data.TaskBatcher(rows[:1], b, seed)
    seen = []
    for step in range(steps):
        mixed = both.batch(step, [0, 1], names, 0)
        solo = alone.batch(step, [0], names, 0)
        assert torch.equal(mixed.input_ids[mixed.task_idx == 0][:, :1], solo.input_ids[:, :1])  # independent
        seen += solo.input_ids[:, 0].tolist()
    for epoch_start in range(0, len(seen) - n + 1, n):                 # every full epoch is a permutation
        assert sorted(seen[epoch_start:epoch_start + n]) == list(range(n))


@needs_real
def test_every_real_file_reads():
    files = sorted(REAL.glob("*/*.tsv"))
    assert len(files) == 75 * 5 * 3
    for f in files:
        examples = data.read_examples(f)
        assert examples and all(ex.references for ex in examples)
    assert all(name in TASKS for name in (p.name for p in REAL.iterdir() if p.is_dir()))


@needs_real
def test_check_on_the_random_split_names_the_45_missing_tasks():
    out = io.StringIO()
    assert data.check(REAL, "random", TASKS, out=out) == 45
    report = out.getvalue()
    assert "75 of 120 tasks" in report and "missing (45):" in report
    assert "glue-sst2" in report and "xsum" in report.split("missing (45):")[1]
