"""The linear subspace (prompt_subspaces.py): U orthonormal, P̄ + U·Proj(P) the best rank-d_I reconstruction
of the training prompts (Eckart–Young, checked against the singular values), IST through it trains
only z, and more directions than training prompts is an error."""
import pytest
import torch
from hypothesis import given, strategies as st

import ipt
import prompt_subspaces


@given(K=st.integers(2, 8), P=st.integers(1, 3), H=st.integers(2, 6), seed=st.integers(0, 2**16), data=st.data())
def test_pca_is_orthonormal_and_the_best_rank_d_reconstruction(K, P, H, seed, data):
    d = data.draw(st.integers(1, min(K, P * H)))
    prompts = torch.randn(K, P, H, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float()
    sub = prompt_subspaces.LinearSubspace(prompts, d)
    assert sub.U.shape == (P * H, d)
    torch.testing.assert_close(sub.U.T @ sub.U, torch.eye(d), atol=1e-5, rtol=0)
    error = (sub(prompts) - prompts).pow(2).sum()
    s = torch.linalg.svdvals((prompts.flatten(1) - prompts.flatten(1).mean(0)).double())
    assert error.item() == pytest.approx(s[d:].pow(2).sum().item(), rel=1e-3, abs=1e-4)   # what is left out
    torch.testing.assert_close(sub.decode(torch.zeros(1, d))[0], prompts.mean(0), atol=1e-5, rtol=0)   # z = 0: P̄


def test_prompts_of_rank_d_are_reconstructed_exactly_and_too_many_directions_refused():
    g = torch.Generator().manual_seed(0)
    base, codes = torch.randn(2, 12, generator=g), torch.randn(6, 2, generator=g)
    prompts = (torch.randn(12, generator=g) + codes @ base).view(6, 3, 4)   # the mean plus a 2-plane
    torch.testing.assert_close(prompt_subspaces.LinearSubspace(prompts, 2)(prompts), prompts, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at most 6 directions"):
        prompt_subspaces.LinearSubspace(prompts, 7)


def test_ist_through_the_linear_subspace_trains_only_z():
    sub = prompt_subspaces.LinearSubspace(torch.randn(5, 2, 4), 3)
    module = ipt.IntrinsicPrompts(sub, torch.zeros(2, 3))
    assert [n for n, p in module.named_parameters() if p.requires_grad] == ["z.0", "z.1"]
    module(torch.tensor([0, 1, 1])).sum().backward()
    assert module.z[0].grad is not None and sub.U.grad is None
