"""decode.greedy gives HF generate's tokens exactly in fp32, on T5 and a decoder-only model, with a
different prompt per row and inputs of different lengths; and it steps aside where generate's greedy
is not argmax (a repetition penalty, beams)."""
import torch
from hypothesis import given, settings, strategies as st

import decode
import ipt
from conftest import VOCAB


def batch(seed, B):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (B,), generator=g)
    ids = torch.randint(2, VOCAB, (B, int(lengths.max())), generator=g)
    mask = (torch.arange(ids.size(1))[None] < lengths[:, None]).long()
    return ids * mask, mask, torch.randn(B, 3, 16, generator=g) * 2


def trimmed(ids, pad):
    """generate stops when every row has ended; ids past that are padding on both sides."""
    keep = ids.size(1)
    while keep > 1 and bool((ids[:, keep - 1] == pad).all()):
        keep -= 1
    return ids[:, :keep]


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), B=st.integers(1, 5), steps=st.integers(1, 12), prompted=st.booleans())
def test_greedy_gives_generates_tokens_on_t5_and_a_decoder_only_model(t5, llama, seed, B, steps, prompted):
    ids, mask, prompts = batch(seed, B)
    prompts = prompts if prompted else None                              # the untuned PLM: no prompt
    for model in (t5, llama):
        expected = ipt.generate(model, prompts, ids, mask, max_new_tokens=steps)
        got = decode.greedy(model, prompts, ids, mask, max_new_tokens=steps, check_every=3)
        pad = model.generation_config.pad_token_id
        assert torch.equal(trimmed(got, pad), trimmed(expected, pad)), type(model).__name__


def test_rows_that_end_are_padded_and_the_loop_stops_once_all_have(t5):
    ids, mask, prompts = batch(1, 4)
    eos = t5.generation_config.eos_token_id
    t5.generation_config.eos_token_id = list(range(VOCAB))               # every token ends a row at once
    try:
        got = decode.greedy(t5, prompts, ids, mask, max_new_tokens=20, check_every=4)
    finally:
        t5.generation_config.eos_token_id = eos
    assert got.shape == (4, 2)                                           # start token, then one that ends it


def test_it_steps_aside_where_generate_is_not_argmax(t5):
    assert decode.applies(t5, 1) and not decode.applies(t5, 4)
    t5.generation_config.repetition_penalty = 1.3
    try:
        assert not decode.applies(t5, 1)
    finally:
        t5.generation_config.repetition_penalty = 1.0
