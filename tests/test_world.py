"""The offline world: determinism, tasks fixed by (type, θ), CrossFit layout and splits."""
import io

import pytest
import torch

import data
import world

SMALL = world.WorldConfig(items=60, tasks_per_type=4, unseen_per_type=1, test_examples=10, d_model=32,
                          pretrain_steps=5, pretrain_batch=8)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return world.build(SMALL, tmp_path_factory.mktemp("w") / "world")


def test_labels_follow_theta():
    w = world.World(SMALL)
    g = torch.Generator().manual_seed(0)
    for name, kind, theta in w.tasks:
        for _ in range(20):
            x, y = w.example(kind, theta, g)
            items = [w.items.index(t) for t in x.split(": ")[1].split()]
            scores = w.features[items] @ theta
            expected = w.items[items[scores.argmax()]] if kind == "pick" else ("yes" if scores[0] > 0 else "no")
            assert y == expected


def test_k_shot_train_and_dev_are_disjoint_and_balanced():
    w = world.World(SMALL)
    g = torch.Generator().manual_seed(1)
    _, kind, theta = next(t for t in w.tasks if t[1] == "sign")
    train, dev = w.k_shot(kind, theta, g, torch.arange(SMALL.items), 4)
    assert not {x for x, _ in train} & {x for x, _ in dev}
    assert sorted(y for _, y in train) == ["no"] * 4 + ["yes"] * 4


def test_world_is_crossfit_shaped_and_checks_clean(built):
    tasks = data.load_tasks(built / "tasks.txt")
    assert len(tasks) == 8 and {t.metric for t in tasks.values()} == {"EM", "ACC"}
    for split in ("random", "cls", "non-cls"):
        out = io.StringIO()
        assert data.check(built / "data", built / "splits" / f"{split}.txt", tasks, out=out) == 0, out.getvalue()
    random = data.load_split(built / "splits" / "random.txt", tasks)
    assert len(random["train"]) == 6 and len(random["test"]) == 2
    cls = data.load_split(built / "splits" / "cls.txt", tasks)
    assert all(tasks[t].type == "cls" for t in cls["train"] + cls["test_in"])
    seeds = [data.read_examples(data.task_file(built / "data", "pick-00", "test", seed=s)) for s in data.SEEDS]
    assert all(s == seeds[0] for s in seeds)                           # one test set for every seed


def test_world_is_deterministic_and_cached(built, tmp_path):
    again = world.build(SMALL, tmp_path / "again")
    for f in sorted((built / "data").rglob("*.tsv")):
        assert f.read_bytes() == (again / "data" / f.relative_to(built / "data")).read_bytes()
    assert world.build(SMALL, built) == built                          # reused, not rebuilt
    assert SMALL.key() != world.WorldConfig().key()


def test_the_world_model_loads_like_any_hf_t5(built):
    from transformers import AutoTokenizer, T5ForConditionalGeneration
    t5 = T5ForConditionalGeneration.from_pretrained(built / "model")
    tokenizer = AutoTokenizer.from_pretrained(built / "model")
    w = world.World(SMALL)
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(f"pick: {' '.join(w.items[:5])}").input_ids)
    assert all("▁" + item in pieces for item in w.items[:5])           # items are single pieces
    assert t5.config.d_model == 32
