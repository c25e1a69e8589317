"""The offline world: determinism, tasks fixed by (type, θ) through nearness to θ, categories,
CrossFit layout (K and 2K files) and splits."""
import io
import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import torch

import checkpoint
import data
from world import pretraining
from world import world
from world import world_cache
from conftest import small_world_config

SMALL = small_world_config()


@pytest.fixture(scope="module")
def built(small_world):
    return small_world


def test_labels_follow_theta():
    w = world.World(SMALL)
    g = torch.Generator().manual_seed(0)
    for name, kind, category, theta in w.tasks:
        for _ in range(20):
            x, y = w.example(kind, theta, g)
            items = [w.items.index(t) for t in x.split()]
            distance = ((w.features[items] - theta) ** 2).sum(1)              # nearest = highest score
            nearest = items[distance.argmin()]
            assert len(items) == world.SHOWN[kind] and kind not in x     # only the prompt tells the kind
            assert y == (w.items[nearest] if kind == "pick" else world.COLOURS[w.colour[nearest]])
            if kind == "colour":                                           # one item of each colour
                assert sorted(w.colour[items].tolist()) == list(range(len(world.COLOURS)))


def test_the_answer_depends_on_the_length_of_theta():
    """Not only its direction (the world before this one planted one number fewer than it said)."""
    w = world.World(SMALL)
    theta = torch.tensor([1.0, -0.5, 0.3])
    answers = lambda th: [w.example("pick", th, torch.Generator().manual_seed(i))[1] for i in range(200)]
    assert answers(theta) != answers(3 * theta)


def test_categories_are_clusters_of_theta():
    w = world.World(world.WorldConfig(tasks_per_type=40))
    for j, kind in enumerate(world.TYPES):
        for c, cat in enumerate(world.CATEGORIES):
            thetas = torch.stack([th for _, k, cc, th in w.tasks if k == kind and cc == cat])
            own = (thetas - w.centres[j, c]).norm(dim=1).mean()
            other = (thetas - w.centres[j, 1 - c]).norm(dim=1).mean()
            assert own < other


def test_k_shot_train_and_dev_are_disjoint_and_balanced():
    w = world.World(SMALL)
    g = torch.Generator().manual_seed(1)
    _, kind, _, theta = next(t for t in w.tasks if t[1] == "colour")
    for k in (4, 8):
        train, dev = w.k_shot(kind, theta, g, torch.arange(SMALL.items), k)
        assert not {x for x, _ in train} & {x for x, _ in dev}
        assert sorted(y for _, y in train) == sorted(world.COLOURS * k)
    _, kind, _, theta = next(t for t in w.tasks if t[1] == "pick")
    train, dev = w.k_shot(kind, theta, g, torch.arange(SMALL.items), 4)
    assert len(train) == len(dev) == 8 and not {x for x, _ in train} & {x for x, _ in dev}


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
    seeds = [data.read_examples(data.task_file(built / "data", "pick-00", "test", k, s))
             for s in data.SEEDS for k in (16, 32)]
    assert all(s == seeds[0] for s in seeds)                           # one test set for every seed and K
    assert len(data.read_examples(data.task_file(built / "data", "colour-00", "train", 32))) == 160  # 2K shots
    assert {t.ontology for t in tasks.values()} == {"noncls/pick-A", "noncls/pick-B", "cls/colour-A", "cls/colour-B"}
    quarter = data.load_split(built / "splits" / "random_50.txt", tasks)
    assert quarter["train"] == data.load_split(built / "splits" / "random_75.txt", tasks)["train"][:3]
    assert quarter["test"] == random["test"]


def test_world_is_deterministic_and_cached(built, tmp_path):
    again = world.build(SMALL, tmp_path / "again")
    for f in sorted((built / "data").rglob("*.tsv")):
        assert f.read_bytes() == (again / "data" / f.relative_to(built / "data")).read_bytes()
    assert world.build(SMALL, built) == built                          # reused, not rebuilt
    assert SMALL.key() != world.WorldConfig().key()
    assert world.WorldConfig().key() == KEY                          # v10's folder: a new key rebuilds every cache


KEY = "e7c3f15798"


@pytest.mark.slow
def test_the_default_worlds_model_ships_and_its_tasks_are_the_same_here(tmp_path):
    """Every machine starts from the repository's pretrained model (CPUs of different kinds pretrain
    different bits), and writes the very task files that model was shipped beside."""
    from transformers import T5ForConditionalGeneration
    cfg = world.WorldConfig()
    source = world.shipped(cfg)
    assert source is not None and source.name == f"world-{KEY}"
    manifest = json.loads((source / "pretraining.json").read_text())
    assert manifest["config"] == json.loads(json.dumps(world.asdict(cfg)))
    world.write_tasks(world.World(cfg), tmp_path)
    assert world_cache.data_hash(tmp_path) == manifest["data"]
    t5 = T5ForConditionalGeneration.from_pretrained(source / "model")
    assert t5.config.d_model == cfg.d_model and (source / "conditioner.safetensors").stat().st_size > 0


def test_a_shipped_model_is_used_instead_of_pretraining_unless_rebuilt(built, tmp_path, monkeypatch):
    monkeypatch.setattr(world, "SHIPPED", tmp_path / "shipped")
    world.ship(SMALL, built)
    monkeypatch.setattr(pretraining, "pretrain", lambda *a: pytest.fail("pretrained although a model ships"))
    root = world.build(SMALL, tmp_path / "from-shipped")
    for f in ("model/model.safetensors", "model/tokenizer.json", "conditioner.safetensors"):
        assert (root / f).read_bytes() == (built / f).read_bytes(), f
    report = json.loads((root / "world.json").read_text())["pretraining"]
    assert report["weights"].startswith("shipped") and report["data"] == world_cache.data_hash(built)
    monkeypatch.setattr(pretraining, "pretrain", lambda *a: {"pretrained": True})
    report = json.loads((world.build(SMALL, root, rebuild=True) / "world.json").read_text())["pretraining"]
    assert report["pretrained"] and report["weights"].startswith("pretrained here")


def test_pretraining_without_noise_is_a_world_of_its_own(built, tmp_path):
    """pretrain_noise=0 is world v7's pretraining: the same generator, another model and cache folder."""
    quiet = replace(SMALL, pretrain_noise=0.0)
    assert SMALL.pretrain_noise == 1.0 and quiet.key() != SMALL.key()
    assert world.WorldConfig.parse(["pretrain_noise=0"], **{
        k: getattr(SMALL, k) for k in ("items", "tasks_per_type", "unseen_per_type", "test_examples", "d_model",
                                       "pretrain_steps", "pretrain_batch")}) == quiet
    root = world.build(quiet, tmp_path / "quiet")
    assert json.loads((root / "world.json").read_text())["pretraining"]["noise"] == 0.0
    assert json.loads((built / "world.json").read_text())["pretraining"]["noise"] == 1.0
    a, b = (checkpoint.load(r / "conditioner.safetensors")[0] for r in (built, root))
    assert not torch.equal(a["maps.pick.weight"], b["maps.pick.weight"])   # the noise changed what was learnt
    with pytest.raises(ValueError, match="not a world setting"):
        world.WorldConfig.parse(["version=7"])


def test_the_command_line_builds_a_variant_and_refuses_a_wrong_setting(monkeypatch, tmp_path, capsys):
    (tmp_path / "world.json").write_text('{"pretraining": {"noise": 0.0}}')
    built = []
    monkeypatch.setattr(world, "build", lambda cfg, root, rebuild: built.append(cfg) or tmp_path)
    world.main(["--seed", "1", "--world", "pretrain_noise=0", "--world", "tasks_per_type=24"])
    assert built == [world.WorldConfig(seed=1, pretrain_noise=0.0, tasks_per_type=24)]
    with pytest.raises(SystemExit):
        world.main(["--world", "noise=0"])
    assert "not a world setting" in capsys.readouterr().err and len(built) == 1


def test_the_world_model_loads_like_any_hf_t5(built):
    from transformers import AutoTokenizer, T5ForConditionalGeneration
    t5 = T5ForConditionalGeneration.from_pretrained(built / "model")
    tokenizer = AutoTokenizer.from_pretrained(built / "model")
    w = world.World(SMALL)
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(f"pick: {' '.join(w.items[:5])}").input_ids)
    assert all("▁" + item in pieces for item in w.items[:5])           # items are single pieces
    assert t5.config.d_model == 32


@settings(max_examples=20, deadline=None)
@given(kinds=st.lists(st.sampled_from(world.TYPES), min_size=1, max_size=6), sigma=st.floats(0.1, 3.0),
       seed=st.integers(0, 2**16))
def test_pretraining_noise_lies_outside_each_rows_conditioning_directions(kinds, sigma, seed):
    """What the model learns to ignore is exactly what does not tell it θ: a row's noise has no
    component in its own kind's conditioning directions, and its size is σ × the conditioning's."""
    torch.manual_seed(seed)
    cond = pretraining.Conditioner(3, 4, 128, world.TYPES)
    g = torch.Generator().manual_seed(seed)
    prompt = cond(torch.randn(len(kinds), 3), kinds)                               # (B, P, H)
    noise = cond.off_plane_noise(prompt, kinds, g, sigma)
    assert noise.shape == prompt.shape
    for row, kind in zip(noise.flatten(1), kinds):
        assert (row @ cond.basis(kind)).abs().max() < 1e-4
    ratio = noise.pow(2).mean().sqrt() / prompt.pow(2).mean().sqrt()
    assert abs(ratio / sigma - (509 / 512) ** 0.5) < 0.15         # 3 of 512 directions removed; one row: ±0.03 sd
