"""The same properties as test_ipt.py, on a decoder-only PLM (a tiny random Llama, SmolLM2's
architecture): [P; E(x); E(y)] with the loss on y only; an empty prompt is the plain model; a row's
result does not depend on its batch-mates' lengths; gradients reach only the stage's tensors;
generation equals greedy decoding by hand, one row at a time, without a cache."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st

import ipt
from conftest import H
from test_ipt import assert_gradients_reach_only_the_stage, assert_rows_match_rows_run_alone, random_batch, seeds


def plain_losses(lm, ids, mask, labels):
    """Reference: the model's own forward on x;y (right-padded, default positions), CE on y."""
    seq, seq_mask, lx = ipt.join_targets(ids, mask, labels)
    logits = lm(input_ids=seq, attention_mask=seq_mask).logits
    out = torch.zeros(labels.shape)
    for b in range(len(ids)):
        for i in range(labels.size(1)):
            if labels[b, i] != ipt.IGNORE:
                out[b, i] = F.cross_entropy(logits[b, lx[b] + i - 1], labels[b, i])
    return out


@given(B=st.integers(1, 3), T=st.integers(1, 6), L=st.integers(1, 4), seed=seeds)
def test_empty_prompt_is_the_plain_model_and_loss_is_on_targets_only(llama, B, T, L, seed):
    ids, mask, labels = random_batch(torch.Generator().manual_seed(seed), B, T, L)
    labels[0, L // 2 + 1:] = ipt.IGNORE                                # ragged targets
    ours = ipt.token_losses(llama, torch.zeros(0, H), ids, mask, labels)
    torch.testing.assert_close(ours, plain_losses(llama, ids, mask, labels), rtol=1e-5, atol=1e-6)
    assert (ours[labels == ipt.IGNORE] == 0).all()


def test_join_targets_puts_each_target_right_after_its_input():
    ids = torch.tensor([[5, 6, 7], [8, 0, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    labels = torch.tensor([[9, 1], [10, ipt.IGNORE]])
    seq, seq_mask, lx = ipt.join_targets(ids, mask, labels)
    assert seq.tolist() == [[5, 6, 7, 9, 1], [8, 10, 0, 0, 0]]
    assert seq_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]] and lx.tolist() == [3, 1]


@given(B=st.integers(2, 4), P=st.integers(1, 4), seed=seeds)
def test_per_row_prompts_match_rows_run_alone(llama, B, P, seed):
    assert_rows_match_rows_run_alone(llama, B, P, seed)


@pytest.mark.parametrize("stage", ["pt", "msf", "ist"])
@given(K=st.integers(1, 3), P=st.integers(1, 3), d_I=st.integers(1, 4), seed=seeds)
def test_gradients_reach_only_the_stage_parameters(llama, stage, K, P, d_I, seed):
    assert_gradients_reach_only_the_stage(llama, stage, K, P, d_I, seed)


@given(P=st.integers(0, 3), seed=seeds)
def test_generate_equals_greedy_decoding_by_hand(llama, P, seed):
    g = torch.Generator().manual_seed(seed)
    ids, mask, _ = random_batch(g, 3, 5, 1)
    prompt = torch.randn(P, H, generator=g)
    out = ipt.generate(llama, prompt, ids, mask, max_new_tokens=6)
    emb = llama.get_input_embeddings()
    for b in range(3):
        x = ids[b, :int(mask[b].sum())]
        new = []
        for _ in range(6):                                             # no cache, no padding: the plain way
            embeds = torch.cat([prompt, emb(torch.tensor(x.tolist() + new))])[None]
            new.append(int(llama(inputs_embeds=embeds).logits[0, -1].argmax()))
            if new[-1] == llama.config.eos_token_id:
                break
        assert out[b, :len(new)].tolist() == new
        assert (out[b, len(new):] == llama.config.pad_token_id).all()
