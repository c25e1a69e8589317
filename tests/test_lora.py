"""LoRA in IPT's place (lora.py, lora_subspaces.py, lora_stages.py): per-row LoRAs in a mixed batch, what
trains, the canonical form and the error through r × r products, the baselines' subspaces, PEFT adapters
in and out, the options' checks, and the three stages end to end on the tiny world."""
import copy
import importlib
import json
import math
import re

import pytest
import torch
from hypothesis import given, settings, strategies as st

from paper import experiments
import ipt
import lora
import lora_stages
from beyond import lora_study
import lora_subspaces
from paper import report
import train
from conftest import installed
from test_experiments import toy, toy_args  # noqa: F401 (a fixture)
from test_ipt import random_batch, seeds
from test_train import args, results

R = 2


def shape_of(plm, rank=R):
    return lora.target_layers(plm, lora.DEFAULT_TARGETS[plm.config.is_encoder_decoder], rank)


def random_loras(shape, K, g, scale=0.3):
    return torch.randn(K, shape.size, generator=g) * scale           # B ≠ 0: each task's ΔW differs


def explicit_delta(shape, theta):
    """ΔW = BA of every layer, formed: [(K, out, in)]."""
    return [B @ A for A, B in shape.split(theta)]


@pytest.fixture(scope="module", params=["t5", "llama"])
def plm(request):
    return request.getfixturevalue(request.param)


# --- Eq. LoRA in a mixed batch -------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(B=st.integers(1, 5), K=st.integers(1, 3), seed=seeds)
def test_each_row_of_a_mixed_batch_gets_what_its_task_gets_alone(plm, B, K, seed):
    g = torch.Generator().manual_seed(seed)
    shape = shape_of(plm)
    theta = random_loras(shape, K, g)
    ids, mask, labels = random_batch(g, B, 6, 3)
    task_idx = torch.randint(0, K, (B,), generator=g)
    binder = lora.RowLoRA(plm, shape, 8.0, lambda ts: theta[ts])
    try:
        together = ipt.token_losses(plm, binder(task_idx), ids, mask, labels)
        for b in range(B):
            n = int(mask[b].sum())
            alone = ipt.token_losses(plm, binder(task_idx[b:b + 1]), ids[b:b + 1, :n], mask[b:b + 1, :n], labels[b:b + 1])
            torch.testing.assert_close(together[b:b + 1], alone, rtol=1e-4, atol=1e-5)
        binder.bound = None
        plain = ipt.token_losses(plm, None, ids, mask, labels)
    finally:
        binder.remove()
    assert (together - plain).abs().max() > 1e-3                      # the LoRA does change the model
    torch.testing.assert_close(ipt.token_losses(plm, None, ids, mask, labels), plain)   # and is gone once removed


def test_a_zero_lora_is_the_plain_model(t5):
    shape = shape_of(t5)
    init = lora.init_lora(shape, torch.Generator().manual_seed(0))[None]          # PEFT's start: B = 0
    ids, mask, labels = random_batch(torch.Generator().manual_seed(1), 3, 5, 2)
    binder = lora.RowLoRA(t5, shape, 8.0, lambda ts: init.expand(len(ts), -1))
    try:
        torch.testing.assert_close(ipt.token_losses(t5, binder(torch.zeros(3, dtype=torch.long)), ids, mask, labels),
                                   ipt.token_losses(t5, None, ids, mask, labels), rtol=0, atol=0)
    finally:
        binder.remove()


def test_targets_are_the_attentions_q_and_v_of_every_layer(t5, llama):
    t5_layers = [n for n, _, _ in shape_of(t5).layers]
    blocks = t5.config.num_layers + t5.config.num_decoder_layers * 2          # the decoder's self and cross attention
    assert len(t5_layers) == 2 * blocks and all(n.endswith((".q", ".v")) for n in t5_layers)
    assert len(shape_of(llama).layers) == 2 * llama.config.num_hidden_layers
    with pytest.raises(ValueError, match=r"--lora-targets qq: no such linear layer .* named .*\bq\b"):
        lora.target_layers(t5, ("q", "qq"), R)


# --- what trains ---------------------------------------------------------------------------------

def stage_module(kind, shape, K, g):
    library = lora.canonical(shape, random_loras(shape, 6, g))
    if kind == "pt":
        return lora.TaskLoRAs(random_loras(shape, K, g))
    if kind == "msf":
        ae = lora.LoraAutoencoder(shape.size, 3, 8, 4)
        ae.start_at(shape, library[:K])
        torch.nn.init.normal_(ae.proj_b[-1].weight, generator=g)       # as after a step: its start is 0
        return lora.ReconstructedLoRAs(ae, shape, library[:K])
    sub = lora.LoraAutoencoder(shape.size, 3, 8, 4) if kind == "ist" else lora_subspaces.build(kind, shape, 3, library, g)
    start = sub.start(K) if hasattr(sub, "start") else torch.randn(K, 3, generator=g)
    return lora.IntrinsicLoRAs(sub, start + 0.1)


@pytest.mark.parametrize("kind", ["pt", "msf", "ist", "pca", "delta-pca", "hub", "basis", "fastfood"])
def test_gradients_reach_only_the_stage_parameters(t5, kind):
    g = torch.Generator().manual_seed(0)
    shape, K = shape_of(t5), 3
    module = stage_module(kind, shape, K, g)
    ids, mask, labels = random_batch(g, 4, 5, 2)
    task_idx = torch.tensor([0, 2, 2, 1])
    binder = lora.RowLoRA(t5, getattr(getattr(module, "subspace", None), "shape", shape), 8.0, module.vectors)
    try:
        loss = ipt.token_losses(t5, binder(task_idx), ids, mask, labels).sum()
        if kind == "msf":
            loss = loss + module.reconstruction_error(torch.arange(K))
        loss.backward()
    finally:
        binder.remove()
    assert all(p.grad is None for p in t5.parameters())
    trained = {n for n, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    expected = {"pt": {"loras.0", "loras.1", "loras.2"}, "msf": {n for n, _ in module.named_parameters()}}
    assert trained == expected.get(kind, {"z.0", "z.1", "z.2"})


# --- the canonical form, the error by r × r products ---------------------------------------------

@settings(max_examples=20, deadline=None)
@given(K=st.integers(1, 3), rank=st.integers(1, 4), seed=seeds)
def test_the_canonical_form_is_the_same_for_every_gauge_and_keeps_delta_w(t5, K, rank, seed):
    g = torch.Generator().manual_seed(seed)
    shape = shape_of(t5, rank)
    theta = random_loras(shape, K, g)
    pairs = []
    for A, B in shape.split(theta):                                    # (BR, R⁻¹A): the same update
        Rm = torch.randn(K, rank, rank, generator=g) + 2 * torch.eye(rank)
        pairs.append((torch.linalg.solve(Rm, A), B @ Rm))
    gauged = shape.join(pairs)
    for a, b in zip(explicit_delta(shape, theta), explicit_delta(shape, gauged)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    canon = lora.canonical(shape, theta)
    torch.testing.assert_close(lora.canonical(shape, gauged), canon, rtol=1e-3, atol=1e-4)
    for a, b in zip(explicit_delta(shape, canon), explicit_delta(shape, theta)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    ae = lora.LoraAutoencoder(shape.size, 3, 8, 4)                     # so the decoder's output is gauge-free
    with torch.no_grad():
        torch.testing.assert_close(ae(lora.canonical(shape, gauged)), ae(canon), rtol=1e-3, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(K=st.integers(1, 3), seed=seeds)
def test_the_error_through_r_by_r_products_is_the_formed_delta_ws(t5, K, seed):
    g = torch.Generator().manual_seed(seed)
    shape = shape_of(t5)
    theta, hat = random_loras(shape, K, g).double(), random_loras(shape, K, g).double()
    formed = sum(((a - b) ** 2).sum() for a, b in zip(explicit_delta(shape, hat), explicit_delta(shape, theta)))
    norm = sum((b ** 2).sum() for b in explicit_delta(shape, theta))
    torch.testing.assert_close(lora.delta_error(shape, hat, theta), formed / norm)
    assert lora.delta_error(shape, theta, theta).abs() < 1e-10


# --- the baselines' subspaces ----------------------------------------------------------------------

def test_the_baselines_decode_what_they_claim(t5):
    g = torch.Generator().manual_seed(0)
    shape = shape_of(t5)
    library = lora.canonical(shape, random_loras(shape, 5, g))
    mean = lora_subspaces.build("mean", shape, 1, library, g)
    torch.testing.assert_close(mean.decode(mean.start(2)), library.mean(0).expand(2, -1))
    pca = lora_subspaces.build("pca", shape, 4, library, g)            # K − 1 directions span the library
    codes = (library - pca.mean) @ pca.U
    torch.testing.assert_close(pca.decode(codes), library, rtol=1e-4, atol=1e-4)
    hub = lora_subspaces.build("hub", shape, 3, library, g)
    torch.testing.assert_close(hub.decode(hub.start(1))[0], library[hub.chosen].mean(0))
    for kind in ("basis", "fastfood"):
        sub = lora_subspaces.build(kind, shape, 3, None, torch.Generator().manual_seed(1))
        start = sub.decode(sub.start(1))[0]
        torch.testing.assert_close(start, lora.init_lora(shape, torch.Generator().manual_seed(1)))
        step = sub.decode(torch.tensor([[1.0, 0.0, 0.0]]))[0] - start
        assert 0.5 < step.norm() < 2                                   # ‖R z‖ ≈ ‖z‖: one lr for every size
    basis = lora_subspaces.build("basis", shape, 3, None, g)
    torch.testing.assert_close(basis.R.T @ basis.R, torch.eye(3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="5 training LoRAs has 4 directions"):
        lora_subspaces.build("pca", shape, 5, library, g)
    with pytest.raises(ValueError, match="LoraHub combines d_I of the 5"):
        lora_subspaces.build("hub", shape, 6, library, g)


# --- PEFT adapters in and out ----------------------------------------------------------------------

@pytest.mark.skipif(not installed("peft"), reason="peft (requirements-dev.txt)")
def test_an_exported_lora_loads_in_peft_and_gives_our_logits(plm, tmp_path):
    peft = importlib.import_module("peft")
    shape = shape_of(plm)
    theta = random_loras(shape, 1, torch.Generator().manual_seed(0))
    lora_stages.write_peft(tmp_path / "a", shape, theta[0], 16.0, plm.config.is_encoder_decoder, "tiny")
    ids, mask, labels = random_batch(torch.Generator().manual_seed(1), 3, 6, 3)
    binder = lora.RowLoRA(plm, shape, 16.0, lambda ts: theta.expand(len(ts), -1))
    try:
        ours = ipt.token_losses(plm, binder(torch.zeros(3, dtype=torch.long)), ids, mask, labels)
    finally:
        binder.remove()
    theirs = ipt.token_losses(peft.PeftModel.from_pretrained(copy.deepcopy(plm), tmp_path / "a").eval().base_model.model,
                              None, ids, mask, labels)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)
    assert (ours - ipt.token_losses(plm, None, ids, mask, labels)).abs().max() > 1e-3
    back = lora_stages.read_peft(tmp_path / "a", shape, 8.0)           # α 16 read at α 8: B doubled, ΔW kept
    for a, b in zip(explicit_delta(shape, back[None]), explicit_delta(shape, theta)):
        torch.testing.assert_close(a * 8.0 / R, b * 16.0 / R)
    with pytest.raises(lora_stages.checkpoint.CheckpointError, match="r = 2, this run has LoRA r = 3"):
        lora_stages.read_peft(tmp_path / "a", shape_of(plm, 3), 8.0)


# --- the options, checked before anything loads ----------------------------------------------------

@pytest.mark.parametrize("extra, says", [
    (["--lora-targets", "q,query"], r"--lora-targets query: no such linear layer in T5ForConditionalGeneration"),
    (["--lora-rank", "0"], r"--lora-rank must be a number ≥ 1, got 0"),
    (["--lora-alpha", "0"], r"--lora-alpha must be a number > 0"),
    (["--lora-targets", "q v"], r"--lora-targets takes comma-separated layer names"),
    (["--stage", "did"], r"--adapter lora trains --stage pt, msf, ist, not did"),
    (["--stage", "ist", "--subspace", "mpt"], r"--adapter lora has no --subspace mpt"),
])
def test_a_bad_lora_option_is_one_line_before_anything_loads(world, capsys, monkeypatch, extra, says):
    monkeypatch.setenv("IPT_CHECK_ONLY", "1")
    with pytest.raises(SystemExit) as e:
        train.main(args(world, "opts", "--adapter", "lora", *extra))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(says, err), err


def test_a_lora_subspace_needs_the_lora_adapter(world, capsys):
    with pytest.raises(SystemExit):
        train.main(args(world, "opts", "--stage", "ist", "--subspace", "hub"))
    assert "--subspace hub is a LoRA subspace: give --adapter lora" in capsys.readouterr().err


# --- the three stages end to end ------------------------------------------------------------------

@pytest.fixture(scope="module")
def lora_run(world):
    L = ["--adapter", "lora", "--lora-rank", str(R)]
    train.main(args(world, "lora", "--stage", "pt", *L, steps=20))
    train.main(args(world, "lora", "--stage", "msf", *L, steps=20))
    return world / "runs" / "lora", L


@pytest.mark.slow
def test_pt_msf_and_ist_through_every_subspace_write_their_results(lora_run, world, capsys, monkeypatch):
    run, L = lora_run
    assert (run / "loras-s100" / "first-word" / "adapter_config.json").is_file()
    assert (run / "lora-msf-d3" / "autoencoder.safetensors").is_file()
    for sub in ("msf", "random", "mean", "delta-mean", "delta-mean-r", "delta-pca", "pca", "hub", "basis", "fastfood"):
        d = ["--intrinsic-dim", "2"] if sub in ("pca", "delta-pca", "hub") else []
        train.main(args(world, "lora", "--stage", "ist", "--subspace", sub, "--tasks-from", "test", *L, *d, steps=10))
    log = [json.loads(line) for line in (run / "lora-msf-d3" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["reconstruction"] <= 1 for r in log)             # logged, and never above the start's
    for folder in ("lora-ist-d3", "lora-ist-random-d3", "lora-ist-mean-d3", "lora-ist-delta-mean-d3",
                   "lora-ist-delta-mean-r-d3", "lora-ist-delta-pca-d2", "lora-ist-pca-d2", "lora-ist-hub-d2",
                   "lora-ist-basis-d3", "lora-ist-fastfood-d3"):
        got = results(run / f"{folder}-s100-test" / "results.tsv")
        assert set(got) == {"second-word"}
        assert (run / f"{folder}-s100-test" / "peft" / "second-word" / "adapter_model.safetensors").is_file()
    monkeypatch.setenv("IPT_CHECK_ONLY", "1")                          # the library has 3 training LoRAs
    with pytest.raises(SystemExit):
        train.main(args(world, "lora", "--stage", "ist", "--subspace", "pca", "--tasks-from", "test", *L))
    assert "the PCA of 3 training LoRAs has 2 directions about their mean; --intrinsic-dim 3" in capsys.readouterr().err


@pytest.mark.slow
def test_pt_starts_from_peft_lora_adapters(lora_run, world, t5):
    """Started from the adapters and barely moved (lr 1e-9): it writes back the LoRAs it read."""
    run, L = lora_run
    train.main(args(world, "from-peft", "--stage", "pt", *L, "--init-from-peft", str(run / "loras-s100"),
                    "--tasks-from", "test", "--lr", "1e-9", steps=10))
    log = (world / "runs" / "from-peft" / "lora-pt-from-loras-s100" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(log[0])["step"] == 0                             # the given start is scored
    shape = lora_stages.shape_of(train.parse_args(args(world, "x", *L)), t5.config)
    source = lora_stages.read_peft(run / "loras-s100" / "second-word", shape, 8.0)
    written = lora_stages.read_peft(world / "runs" / "from-peft" / "loras-s100" / "second-word", shape, 8.0)
    assert source.abs().max() > 0.1 and (written - source).abs().max() < 1e-6


# --- the study: its plan, its knee, its report ---------------------------------------------------

def test_a_knee_is_the_last_real_step_larger_than_every_step_after_it():
    # the measured curves (world/WORLD.md): prompt IST, random split, knee at its planted 4 and not at 2
    assert lora_study.knee([1, 2, 3, 4, 6], [0.38, 0.76, 0.90, 0.99, 0.98]) == pytest.approx((4, 0.09, -0.01))
    assert lora_study.knee([1, 2, 3, 4, 6], [0.1, 0.2, 0.8, 0.82, 0.84]) == pytest.approx((3, 0.6, 0.02))
    assert lora_study.knee([1, 2, 3, 4], [0.1, 0.3, 0.5, 0.7]) == pytest.approx((4, 0.2, 0.0))   # still rising
    assert lora_study.knee([1, 2, 3], [0.5, 0.5, 0.52]) is None                    # flat: no knee
    assert lora_study.knee([1, 2, 3, 4], [0.2, 0.5, 0.8, 0.81]) == pytest.approx((3, 0.3, 0.01))
    assert lora_study.knee([1, 2, 3], [0.2, math.nan, 0.9]) == pytest.approx((3, 0.7, 0.0))   # a gap is skipped


def test_the_study_plans_every_subspace_at_every_d_beside_the_prompts(toy, tmp_path):
    p = experiments.plan(toy_args(toy, tmp_path, "--splits", "random,cls", "--lora", "--lora-splits", "random",
                                  "--no-ablations"))
    lora_cells = {(c.challenge, c.dim) for c in p.cells if c.split == "LoRA random"}
    methods = set(lora_study.METHODS.values())
    # the toy's random split has 3 training LoRAs: PCA spans 2 directions, LoraHub picks up to 3
    assert lora_cells == {(f"T_test({m})", d) for m in methods for d in (1, 2)} | {("T_train(LoRA-MSF)", d) for d in (1, 2)}
    lora_jobs = [train.parse_args(j.argv) for j in p.jobs if "--adapter" in j.argv]
    assert all(c.adapter == "lora" for c in lora_jobs)
    for fixed in lora_study.FIXED:                                     # 0 numbers: one run each
        assert sum(c.stage == "ist" and c.subspace == fixed for c in lora_jobs) == 1
    assert all(c.ref is p.meta["lora"]["pt"] for c in p.cells if c.split.startswith("LoRA"))
    assert not any(c.split == "LoRA cls" for c in p.cells)
    report.write(p, tmp_path)                                          # nothing run: every stage named
    text = (tmp_path / "report.md").read_text()
    assert "## Beyond the paper: the intrinsic task subspace of LoRA" in text and (tmp_path / "lora.png").is_file()
    assert all(j.command() in text for j in p.jobs)
