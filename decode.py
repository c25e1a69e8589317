"""
Greedy decoding written out: the encoder (T5) or [P; x] (decoder-only) runs once, then one forward
of the newest token a step through the model's own KV cache (T5's cross-attention keys and values
are computed once, in the first step), finished rows fed padding, and the loop's end checked at each
of the first `check_every` steps (labels end there), then every `check_every` (each check waits for
the device). It gives HF `generate(do_sample=False, num_beams=1)`'s tokens (tests/test_decode.py);
beams, and models whose generation config changes the logits (a repetition penalty, say), stay on
`ipt.generate`.
"""
import inspect

import torch
from transformers import DynamicCache, EncoderDecoderCache

import ipt

# generation-config fields that make HF's greedy choice differ from argmax of the logits
ALTERS_LOGITS = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
                 "min_length": 0, "min_new_tokens": None, "bad_words_ids": None, "suppress_tokens": None,
                 "begin_suppress_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
                 "sequence_bias": None}


def applies(plm, num_beams):
    """Whether this decoder gives `generate`'s tokens for this model: greedy, and nothing in the
    model's generation config that changes the logits."""
    gc = plm.generation_config
    return num_beams == 1 and all(getattr(gc, k, default) in (default, None) for k, default in ALTERS_LOGITS.items())


def cache_argument(plm):
    """The forward's name for the KV cache: `cache` since transformers 5.2x, `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(type(plm).forward).parameters else "past_key_values"


def stop_ids(plm, device):
    eos = plm.generation_config.eos_token_id
    eos = eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
    return torch.tensor(eos, device=device, dtype=torch.long)


@torch.no_grad()
def greedy(plm, prompt, input_ids, attention_mask, max_new_tokens=32, check_every=4):
    """As ipt.generate with num_beams = 1: -> ids (B, steps); T5's begin with the decoder start token,
    a decoder-only model's are the new tokens only. Rows that have ended are padded."""
    eos, name = stop_ids(plm, input_ids.device), cache_argument(plm)
    pad = plm.generation_config.pad_token_id
    pad = pad if pad is not None else eos[0].item()
    if plm.config.is_encoder_decoder:
        hidden, mask = ipt.encode(plm, prompt, input_ids, attention_mask)
        start = torch.full((len(input_ids), 1), plm.generation_config.decoder_start_token_id, device=input_ids.device)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        step = lambda token: plm(encoder_outputs=hidden, attention_mask=mask, decoder_input_ids=token,
                                 use_cache=True, **{name: cache}).logits[:, -1]
        logits, out = step(start), [start]
    else:
        embeds, mask = ipt.left_align(*ipt.prepend_prompt_causal(plm, prompt, input_ids, attention_mask))
        cache, position = DynamicCache(), ipt.positions(mask)
        logits = plm(inputs_embeds=embeds, attention_mask=mask, position_ids=position, use_cache=True,
                     **{name: cache}).logits[:, -1]
        position = position[:, -1:]

        def step(token):
            nonlocal mask, position
            mask, position = torch.cat([mask, mask.new_ones(len(mask), 1)], 1), position + 1
            return plm(input_ids=token, attention_mask=mask, position_ids=position, use_cache=True,
                       **{name: cache}).logits[:, -1]
        out = []
    done = torch.zeros(len(input_ids), dtype=torch.bool, device=input_ids.device)
    for i in range(max_new_tokens):
        token = torch.where(done, pad, logits.argmax(-1))[:, None]                    # (B, 1)
        out.append(token)
        done |= torch.isin(token[:, 0], eos)
        checked = i < check_every or (i + 1) % check_every == 0     # short answers (a label) end early
        if i + 1 == max_new_tokens or (checked and bool(done.all())):
            break
        logits = step(token)
    ids = torch.cat(out, 1)
    keep, ended = ids.size(1), bool(done.all())     # every row ended: drop the padding after the last end
    while ended and keep > 1 and bool((ids[:, keep - 1] == pad).all()):
        keep -= 1
    return ids[:, :keep]
