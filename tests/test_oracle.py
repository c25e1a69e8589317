"""The world's oracle IST: the plane of best fit, gradient to z alone, and the command end to end
on a barely pretrained small world."""
import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import checkpoint
from world import oracle
from world import pretraining
from world import world
from test_world import SMALL


@given(st.integers(0, 2**16), st.integers(4, 12))
def test_the_plane_holds_every_theta_at_full_dimension_and_ranks_the_variance(seed, k):
    thetas = torch.randn(k, 3, generator=torch.Generator().manual_seed(seed)) * torch.tensor([3.0, 1.0, 0.3])
    mu, basis = oracle.plane(thetas, 3)
    assert torch.allclose(basis @ basis.T, torch.eye(3), atol=1e-5)
    assert torch.allclose(mu + (thetas - mu) @ basis.T @ basis, thetas, atol=1e-4)
    spread = ((thetas - mu) @ basis.T).var(0)
    assert (spread[:-1] >= spread[1:] - 1e-5).all()
    assert oracle.plane(thetas, 2)[1].shape == (2, 3)


def test_only_z_trains_and_the_prompt_is_the_conditioning_on_the_plane():
    cond = pretraining.Conditioner(dim=3, prompt_len=2, d_model=8, types=world.TYPES)
    mu, basis = torch.tensor([0.5, 0.0, -1.0]), torch.eye(3)[:2]
    prompts = oracle.OraclePrompts(cond, "colour", mu, basis)
    with torch.no_grad():
        prompts.z.copy_(torch.tensor([1.0, 2.0]))
    assert torch.allclose(prompts(3)[1], cond(torch.tensor([[1.5, 2.0, -1.0]]), ["colour"])[0])
    prompts(2).pow(2).sum().backward()
    assert prompts.z.grad is not None and prompts.z.grad.abs().sum() > 0
    assert all(p.grad is None for p in cond.parameters())
    assert [n for n, p in prompts.named_parameters() if p.requires_grad] == ["z"]


def test_the_command_scores_every_held_out_task_at_every_d(tmp_path):
    root = world.build(SMALL, tmp_path / "world")
    out = oracle.main(["--root", str(root), "--steps", "2"])
    held = {n for n, t in json.loads((root / "world.json").read_text())["tasks"].items()
            if int(n[-2:]) >= SMALL.tasks_per_type - SMALL.unseen_per_type}
    assert set(out) == held and json.loads((root / "oracle.json").read_text()) == out
    for r in out.values():
        assert set(r) == {"kind", "true", "1", "2", "3"} and all(0 <= r[k] <= 1 for k in ("true", "1", "2", "3"))


def test_the_true_conditionings_lie_wholly_in_the_conditioning_directions_and_noise_does_not():
    cond = pretraining.Conditioner(dim=3, prompt_len=4, d_model=32, types=world.TYPES)
    with torch.no_grad():
        true = cond(torch.randn(20, 3), ["pick"] * 20)
    assert abs(oracle.share_inside(cond, "pick", true) - 1) < 1e-4
    noise = torch.randn(400, 4, 32, generator=torch.Generator().manual_seed(0))
    assert abs(oracle.share_inside(cond, "pick", noise) - 3 / 128) < 0.01       # d* of P·H directions


def test_the_prompt_report_reads_a_store_and_names_a_missing_one(tmp_path, capsys):
    root = world.build(SMALL, tmp_path / "world")
    _, cfg, cond = oracle.load_world(root)
    names = [n for n in json.loads((root / "world.json").read_text())["tasks"] if n.startswith("pick")]
    thetas = torch.randn(len(names), cfg.dim)
    for name, theta in zip(names, thetas):                  # the true conditionings, as if PT had found them
        checkpoint.save(tmp_path / "store" / f"{name}.safetensors", {"prompt": cond(theta[None], ["pick"])[0].detach()})
    shares = oracle.main(["--root", str(root), "--prompts", str(tmp_path / "store")])
    assert set(shares) == {"pick"} and abs(shares["pick"] - 1) < 1e-4
    assert "colour: fewer than two PT prompts" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        oracle.main(["--root", str(root), "--prompts", str(tmp_path / "nowhere")])
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        oracle.main(["--world", "pretrain_noise=loud", "--prompts", str(tmp_path / "store")])
    assert "pretrain_noise takes a float" in capsys.readouterr().err
