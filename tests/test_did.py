"""DID (did.py): the Walsh–Hadamard transform against Sylvester's matrix, Fastfood against its
matrices written out, the scaling, and on both kinds of PLM: z = 0 is exactly the frozen model,
only z receives gradients, and tied weights move together."""
import pytest
import torch
from hypothesis import given, strategies as st

import data
import did
import ipt
from conftest import tiny_llama, tiny_t5
from test_ipt import random_batch, snapshot


def sylvester(L):
    H = torch.ones(1, 1)
    while H.size(0) < L:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)])
    return H


@pytest.mark.parametrize("L", [1, 2, 4, 8, 32])
def test_hadamard_is_sylvesters_matrix_and_orthogonal(L):
    x = torch.randn(3, L, dtype=torch.float64)
    H = sylvester(L).double()
    torch.testing.assert_close(did.hadamard(x), x @ H)
    torch.testing.assert_close(did.hadamard(did.hadamard(torch.eye(L, dtype=torch.float64))), L * torch.eye(L, dtype=torch.float64))


@given(st.integers(0, 11), st.sampled_from([2, 4, 32]))
def test_hadamard_in_blocks_is_the_whole_matrix(log_L, block):
    """Any block size gives x @ H_L: Sylvester's H_L = H_f ⊗ H_{L/f} applied factor by factor."""
    L = 2 ** log_L
    x = torch.randn(2, L, dtype=torch.float64, generator=torch.Generator().manual_seed(log_L))
    torch.testing.assert_close(did.hadamard(x, block=block), x @ sylvester(L).double())


def test_fastfood_is_h_g_pi_h_b_written_out():
    g = torch.Generator().manual_seed(0)
    f = did.Fastfood(d=3, D=6, generator=g)                           # L = 8
    H = sylvester(8)
    Pi = torch.eye(8)[f.Pi]                                           # (Pi v)_i = v[Pi_i]
    P = (H @ torch.diag(f.G) @ Pi @ H @ torch.diag(f.B))[:6, :3] * f.scale    # H symmetric: x @ H = H x
    z = torch.randn(3, generator=g)
    torch.testing.assert_close(f(z), P @ z)


def test_fastfood_keeps_the_length_of_z_whatever_the_tensor_size():
    g = torch.Generator().manual_seed(1)
    for D in (100, 1000, 5000):
        ratios = [did.Fastfood(8, D, g)(z).norm() / z.norm() for z in torch.randn(20, 8, generator=g)]
        assert 0.6 < torch.stack(ratios).mean() < 1.4


def test_the_batched_projection_is_each_weights_own_fastfood():
    """Weights of one padded length are projected together; each still moves by its own P z."""
    plm, d, seed = ipt.freeze(tiny_t5(seed=0)), 4, 7
    names = [n for n, _ in plm.named_parameters()]                   # a tied weight once, by its first name
    weights = did.IntrinsicWeights(plm, d, seed)
    assert len(weights.lengths) < len(names)                          # batching happened
    with torch.no_grad():
        weights.z.copy_(torch.randn(d, generator=torch.Generator().manual_seed(0)))
        for name in names:
            module_name, _, attr = name.rpartition(".")
            module = plm.get_submodule(module_name)
            moved = getattr(module, attr) - module.parametrizations[attr].original
            own = did.Fastfood(d, moved.numel(), data.task_generator(seed, name))(weights.z)
            torch.testing.assert_close(moved.flatten(), own, rtol=1e-5, atol=1e-6)


def test_training_passes_each_get_their_own_graph():
    """Two forward/backward passes at one value of z (a step in chunks) both reach z."""
    plm = ipt.freeze(tiny_t5(seed=1))
    weights = did.IntrinsicWeights(plm, 3, 0)
    ids, mask, labels = random_batch(torch.Generator().manual_seed(0), 2, 5, 3)
    grads = []
    for _ in range(2):
        ipt.token_losses(plm, None, ids, mask, labels).sum().backward()
        grads.append(weights.z.grad.clone())
    torch.testing.assert_close(grads[1], 2 * grads[0])


@pytest.mark.parametrize("make", [tiny_t5, tiny_llama], ids=["t5", "llama"])
@given(d=st.integers(1, 6), seed=st.integers(0, 1000))
def test_z_zero_is_the_frozen_model_and_only_z_learns(make, d, seed):
    """Bit-identical in evaluation. While autograd records, a weight that requires grad can take
    another kernel path, so training-mode losses agree to float rounding only."""
    g = torch.Generator().manual_seed(seed)
    plm = ipt.freeze(make(seed=seed % 3))
    ids, mask, labels = random_batch(g, 3, 5, 3)
    losses = lambda: ipt.token_losses(plm, None, ids, mask, labels)
    with torch.no_grad():
        before = losses()
    frozen = snapshot(plm)
    weights = did.IntrinsicWeights(plm, d, seed)
    with torch.no_grad():
        assert torch.equal(losses(), before)                                          # z = 0: exactly θ_0
    assert [n for n, p in weights.named_parameters()] == ["z"]
    assert weights.projected == sum(p.numel() for p in frozen.values())
    training = losses()
    torch.testing.assert_close(training, before, rtol=1e-5, atol=1e-5)
    training.sum().backward()
    assert weights.z.grad is not None and torch.isfinite(weights.z.grad).all() and weights.z.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in plm.named_parameters() if "original" in n)
    torch.optim.AdamW([weights.z], lr=0.1).step()
    originals = {n.replace(".parametrizations", "").replace(".original", ""): p for n, p in plm.named_parameters()}
    assert all(torch.equal(originals[n], frozen[n]) for n in frozen)                    # θ_0 untouched
    with torch.no_grad():
        assert (losses() - before).abs().max() > 1e-4                                   # but the model moved


def test_tied_weights_move_together():
    t5 = ipt.freeze(tiny_t5())
    weights = did.IntrinsicWeights(t5, 4, 0)
    with torch.no_grad():
        weights.z.normal_()
    assert torch.equal(t5.get_input_embeddings().weight, t5.get_encoder().embed_tokens.weight)
    assert torch.equal(t5.get_input_embeddings().weight, t5.get_decoder().embed_tokens.weight)
