"""The baselines beyond the paper (prompt_subspaces.py: SPoT, MPT): SPoT's start is exactly the chosen prompt
(the mean, or the nearest training task's by cosine of z against Proj(P)); MPT with u = v = 1 is P*
itself, its source trains P*, u and v, and its target only u and v."""
import pytest
import torch

import checkpoint
import prompt_subspaces
import stages
import train
from test_train import args, metrics, results, spy_start


def test_mean_start_is_the_mean_and_nearest_is_the_most_cosine_similar():
    prompts = torch.arange(24.0).view(3, 2, 4)
    torch.testing.assert_close(prompt_subspaces.mean_start(prompts, 2), prompts[1:2].expand(2, -1, -1))
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    z = torch.tensor([[3.0, 0.1], [-5.0, 1.0], [2.0, 2.1]])             # length does not matter, direction does
    index, cosine = prompt_subspaces.nearest(z, codes)
    assert index.tolist() == [0, 2, 1] and cosine[1].item() == pytest.approx(5 / 26 ** 0.5)
    exclude = torch.tensor([[True, False, False], [False, False, False], [False, True, False]])
    assert prompt_subspaces.nearest(z, codes, exclude)[0].tolist() == [1, 2, 0]   # the best allowed one


def test_mpt_with_u_v_one_is_the_shared_prompt_and_rank_one_otherwise():
    shared = torch.randn(3, 5)
    r = prompt_subspaces.RankOne(shared)
    torch.testing.assert_close(r.decode(r.start(2)), shared.expand(2, -1, -1))
    u, v = torch.randn(3), torch.randn(5)
    prompt = r.decode(torch.cat([u, v])[None])[0]
    torch.testing.assert_close(prompt, shared * torch.outer(u, v))
    assert torch.linalg.matrix_rank(prompt / shared) == 1


def test_mpt_source_trains_the_shared_prompt_and_each_tasks_u_v():
    module = prompt_subspaces.MultitaskPrompts(torch.randn(2, 4), num_tasks=3)
    assert sum(p.numel() for p in module.parameters()) == 2 * 4 + 3 * (2 + 4)
    module(torch.tensor([0, 2, 2])).square().sum().backward()
    assert module.autoencoder.shared.grad is not None and module.z[1].grad is None and module.z[2].grad is not None


@pytest.fixture(scope="module")
def prompts_and_ist(world):
    """PT of every task, MSF on the training tasks, IST on the unseen one (its z picks the nearest)."""
    train.main(args(world, "beyond", "--stage", "pt", "--steps", "20"))
    train.main(args(world, "beyond", "--stage", "msf", "--steps", "10"))
    train.main(args(world, "beyond", "--stage", "ist", "--tasks-from", "test", "--steps", "10"))
    return world / "runs" / "beyond"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mean", "nearest"])
def test_transfer_starts_exactly_at_the_chosen_prompt(prompts_and_ist, world, monkeypatch, mode):
    run, start = prompts_and_ist, spy_start(monkeypatch)
    store = {n: checkpoint.load(run / "prompts-s100" / f"{n}.safetensors")[0]["prompt"]
             for n in ("first-word", "last-word", "has-cat")}
    extra = ["--similar-by", str(run / "ist-d3-s100-test")] if mode == "nearest" else []
    before = (run / "prompts-s100" / "second-word.safetensors").read_bytes()
    train.main(args(world, "beyond", "--stage", "pt", "--tasks-from", "test", "--steps", "10", "--transfer", mode,
                    "--transfer-from", str(run / "prompts-s100"), *extra))
    out = run / f"pt-transfer-{mode}-s100-test"
    assert (run / "prompts-s100" / "second-word.safetensors").read_bytes() == before       # MSF's inputs stay
    assert (run / f"prompts-s100-transfer-{mode}" / "second-word.safetensors").is_file()
    chosen = (out / "transfer.tsv").read_text().splitlines()[1].split("\t")
    if mode == "mean":
        expected = torch.stack(list(store.values())).mean(0)
    else:
        z, meta = checkpoint.load(run / "ist-d3-s100-test" / "z.safetensors")
        ae, _ = stages.load_autoencoder(meta["autoencoder"])
        codes = ae.encode(torch.stack(list(store.values()))).detach()
        cos = torch.nn.functional.cosine_similarity(z["second-word"][None], codes)
        assert chosen[1] == list(store)[int(cos.argmax())] and float(chosen[2]) == pytest.approx(cos.max().item(), abs=1e-4)
        expected = store[chosen[1]]
    assert torch.equal(start["prompts"][0], expected)
    assert [r["step"] for r in metrics(out / "metrics.jsonl")] == [0, 10]      # the start is scored
    assert set(results(out / "results.tsv")) == {"second-word"}


@pytest.mark.slow
def test_mpt_source_then_target_with_only_u_v_training(prompts_and_ist, world, monkeypatch):
    run = prompts_and_ist
    train.main(args(world, "beyond", "--stage", "mpt", "--steps", "10"))
    shared, meta = checkpoint.load(run / "mpt" / "shared_prompt.safetensors")
    assert shared["shared"].shape == (4, 16) and meta["tasks"] == ["first-word", "last-word", "has-cat"]
    seen, real = {}, stages.SETUPS["ist"]

    def spy(*a, **k):
        stage = real(*a, **k)
        seen["trainable"] = [n for n, p in stage.module.named_parameters() if p.requires_grad]
        seen["start"] = stage.prompts(torch.tensor([0])).detach()
        return stage
    monkeypatch.setitem(stages.SETUPS, "ist", spy)
    train.main(args(world, "beyond", "--stage", "ist", "--subspace", "mpt", "--tasks-from", "test", "--steps", "10"))
    assert seen["trainable"] == ["z.0"] and torch.equal(seen["start"][0], shared["shared"])
    z, meta = checkpoint.load(run / "ist-mpt-s100-test" / "z.safetensors")
    assert meta["autoencoder"] == "mpt" and z["second-word"].shape == (4 + 16,)


def test_transfer_and_mpt_options_are_checked_before_anything_loads(world):
    for extra, message in ((["--transfer", "nearest"], "needs --similar-by"),
                           (["--similar-by", "x"], "needs --similar-by"),
                           (["--transfer", "mean", "--init-from-ist", "x"], "give one of"),
                           (["--stage", "ist", "--transfer", "mean"], "belongs to --stage pt"),
                           (["--transfer", "first"], "choose , mean, nearest"),
                           (["--transfer-from", "x"], "give --transfer too")):
        with pytest.raises(SystemExit, match=message):
            train.main(args(world, "never", *extra))
    with pytest.raises(SystemExit, match="no MPT shared prompt"):
        train.main(args(world, "never", "--stage", "ist", "--subspace", "mpt"))
