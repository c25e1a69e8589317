"""beyond/similarity.py: the cosine matrix, and the block score on hand-made z with known blocks."""
import math

import pytest
import torch
from hypothesis import given, strategies as st

from beyond import similarity


def test_block_score_of_known_blocks():
    # two categories pointing opposite ways: within +1, across −1 -> 2; orthogonal ways: 1 - 0 -> 1
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-3.0, 0.0]])
    assert similarity.block_score(similarity.cosine_matrix(z), ["a", "a", "b", "b"]) == pytest.approx(2.0)
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    assert similarity.block_score(similarity.cosine_matrix(z), ["a", "a", "b", "b"]) == pytest.approx(1.0)
    assert math.isnan(similarity.block_score(similarity.cosine_matrix(z), ["a", "b", "c", "d"]))   # no pairs within


@given(st.integers(0, 2**16))
def test_the_score_depends_on_directions_and_labels_not_on_order_or_length(seed):
    g = torch.Generator().manual_seed(seed)
    z, labels = torch.randn(12, 3, generator=g), [i % 3 for i in range(12)]
    sim = similarity.cosine_matrix(z)
    torch.testing.assert_close(sim, sim.T)
    torch.testing.assert_close(sim.diagonal(), torch.ones(12))
    score = similarity.block_score(sim, labels)
    perm, scale = torch.randperm(12, generator=g), torch.rand(12, 1, generator=g) + 0.1
    moved = similarity.block_score(similarity.cosine_matrix((z * scale)[perm]), [labels[i] for i in perm])
    assert moved == pytest.approx(score, abs=1e-5)


def test_order_groups_by_kind_then_category():
    names, kinds, cats = ["d", "c", "b", "a"], ["noncls", "cls", "noncls", "cls"], ["x", "y", "w", "y"]
    assert [names[i] for i in similarity.order(names, kinds, cats)] == ["a", "c", "b", "d"]
