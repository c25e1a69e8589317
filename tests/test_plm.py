"""The frozen model: T5's attention with one merged mask per forward computes what transformers'
SDPA does; rank classification (--eval rank) picks the most likely class, and agrees with
generation wherever generation produces one of the task's labels."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

import data
import ipt
import plm
import train
from conftest import VOCAB, tiny_llama, tiny_t5
from test_train import WORDS, args


@given(seed=st.integers(0, 2**16), rows=st.integers(1, 5), T=st.integers(1, 12), L=st.integers(1, 5),
       P=st.integers(0, 4))
def test_one_merged_mask_gives_sdpas_losses_generations_and_prompt_gradients_bit_for_bit(seed, rows, T, L, P):
    """Padded rows, targets of several lengths, with and without a prompt: the bias-and-mask merge
    made once per forward changes no bit of the loss, of the prompt's gradient, or of what is generated."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (rows, T), generator=g)
    mask = (torch.arange(T)[None] < torch.randint(1, T + 1, (rows, 1), generator=g)).long()
    labels = torch.randint(2, VOCAB, (rows, L), generator=g)
    labels[torch.arange(L)[None] >= torch.randint(1, L + 1, (rows, 1), generator=g)] = ipt.IGNORE
    model = ipt.freeze(tiny_t5())
    out = {}
    for attention in ("sdpa", plm.ONE_MASK):
        if attention == plm.ONE_MASK:
            plm.one_mask(model)
        assert model.config._attn_implementation == attention
        prompt = (torch.randn(rows, P, model.config.d_model, generator=torch.Generator().manual_seed(seed))
                  .requires_grad_()) if P else None
        losses = ipt.token_losses(model, prompt, ids, mask, labels)
        if P:
            losses.sum().backward()
        out[attention] = (losses.detach(), prompt.grad if P else None,
                          ipt.generate(model, prompt, ids, mask, max_new_tokens=4))
    (a, ga, ida), (b, gb, idb) = out.values()
    assert torch.equal(a, b) and torch.equal(ida, idb) and (P == 0 or torch.equal(ga, gb))


def test_other_models_keep_their_attention(llama):
    assert plm.one_mask(llama).config._attn_implementation == "sdpa"


class Tokens:
    """The two calls `rank` makes of a tokenizer."""
    pad_token_id = 0

    def decode(self, ids, skip_special_tokens):
        return " ".join(map(str, ids))


def test_rank_picks_the_option_of_highest_log_likelihood(monkeypatch):
    """Known answer: per-token losses fixed by hand; the summed log-likelihood decides, per row."""
    per_option = {(5, 1): [0.2, 0.1], (6, 6, 1): [0.1, 0.1, 0.05], (7, 1): [1.0, 0.0]}    # sums .3, .25, 1.0

    def token_losses(model, prompt, input_ids, attention_mask, labels):
        rows = [tuple(r[r != ipt.IGNORE].tolist()) for r in labels]
        out = torch.zeros(labels.shape)
        for b, r in enumerate(rows):
            out[b, :len(r)] = torch.tensor(per_option[r]) + (0.5 if input_ids[b, 0] == 2 and r == (6, 6, 1) else 0)
        return out
    monkeypatch.setattr(ipt, "token_losses", token_losses)
    model = type("Model", (), {"device": torch.device("cpu"), "config": type("C", (), {"is_encoder_decoder": False})})()
    cfg = train.Config(eval_batch_size=2)
    prepared = [{"options": [[5, 1], [6, 6, 1], [7, 1]]}]
    got = plm.rank(cfg, model, Tokens(), lambda idx: None, [(0, [3, 4]), (0, [2, 4])], prepared)
    assert got == ["6 6 1", "5 1"]                                   # row 2: option 2 made less likely


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), B=st.integers(1, 6), batch=st.integers(1, 7))
def test_t5_encodes_each_row_once_and_scores_each_option_as_a_whole_pass_would(t5, seed, B, batch):
    """option_scores_t5 (the encoder once a row, its states shared by the options) against
    option_scores (a forward of [P; x] and the option for every pair), per-row prompts, any batch size."""
    g = torch.Generator().manual_seed(seed)
    rows = [(k % 2, torch.randint(2, 60, (int(torch.randint(1, 7, (1,), generator=g)),), generator=g).tolist())
            for k in range(B)]
    options = [[[5, 1], [6, 7, 1], [8, 1]], [[9, 9, 9, 1], [10, 1]]]                # task 0: three, task 1: two
    pairs = [(i, o) for i, (k, _) in enumerate(rows) for o in options[k]]
    prompts = torch.randn(2, 3, 16, generator=g)
    cfg, tokens = train.Config(eval_batch_size=batch), type("T", (), {"pad_token_id": 0})()
    whole = plm.option_scores(cfg, t5, tokens, lambda idx: prompts[idx], rows, pairs)
    once = plm.option_scores_t5(cfg, t5, tokens, lambda idx: prompts[idx], rows, pairs)
    assert once == pytest.approx(whole, abs=1e-4, rel=1e-5)


@pytest.mark.slow
def test_rank_classification_agrees_with_generation_where_generation_is_a_label(world):
    """The tiny T5 of the end-to-end tests, fine-tuned by hand on first-word (the answer: one of ten
    words) until it answers with words; the ten words as the options; no prompt."""
    cfg = train.parse_args(args(world, "rank", "--stage", "untuned", "--task", "first-word"))
    model, tokenizer = plm.load(cfg, torch.device("cpu"))
    prepared = data.prepare(cfg, ["first-word"], data.load_tasks(cfg.tasks_file), tokenizer)
    prepared[0]["options"] = data.tokenize(tokenizer, WORDS, cfg.max_target_len)
    batch = data.collate([(0, x, y) for x, y in prepared[0]["train"]], tokenizer.pad_token_id)
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    torch.manual_seed(0)
    for _ in range(300):
        ipt.token_losses(model, None, batch.input_ids, batch.attention_mask, batch.labels).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    ipt.freeze(model)
    no_prompt = lambda idx: None
    rows = [(0, ids) for ids, _ in prepared[0]["test"] + prepared[0]["dev"]]
    generated = plm.predict(cfg, model, tokenizer, no_prompt, rows)
    ranked = plm.rank(cfg, model, tokenizer, no_prompt, rows, prepared)
    labels = set(WORDS)
    valid = [i for i, g in enumerate(generated) if g in labels]
    assert len(valid) >= len(rows) // 2 and len({generated[i] for i in valid}) >= 3      # not vacuous
    assert [ranked[i] for i in valid] == [generated[i] for i in valid]
    assert set(ranked) <= labels
    cfg.eval = "rank"                                                  # and score_tasks takes that path
    test = prepared[0]["test"]
    assert plm.score_tasks(cfg, model, tokenizer, no_prompt, prepared, [0], "test")[0] == pytest.approx(
        sum(r in refs for r, (_, refs) in zip(ranked, test)) / len(test))


@pytest.mark.parametrize("kind", ["t5", "t5-untied", "llama"])
@settings(max_examples=5, deadline=None)                               # bf16 on a CPU without AMX is slow
@given(seed=st.integers(0, 2**16), rows=st.integers(1, 4), T=st.integers(1, 8), L=st.integers(1, 4))
def test_bf16_weights_compute_what_bf16_autocast_computes(kind, seed, rows, T, L):
    """plm.weights_in: the frozen model's linear weights held in bf16 give, under bf16 autocast, the
    same losses, prompt gradients and generations as fp32 weights cast by autocast, bit for bit."""
    from transformers import T5ForConditionalGeneration
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (rows, T), generator=g)
    mask = (torch.arange(T)[None] < torch.randint(1, T + 1, (rows, 1), generator=g)).long()
    labels = torch.randint(3, VOCAB, (rows, L), generator=g)
    labels[torch.arange(L)[None] >= torch.randint(1, L + 1, (rows, 1), generator=g)] = ipt.IGNORE
    out = []
    for cast in (False, True):
        model = tiny_llama() if kind == "llama" else tiny_t5()
        if kind == "t5-untied":
            torch.manual_seed(0)
            model = T5ForConditionalGeneration(model.config.__class__(**{**model.config.to_dict(),
                                                                         "tie_word_embeddings": False}))
        model = ipt.freeze(plm.one_mask(model))
        if cast:
            plm.weights_in(model, torch.bfloat16)
            assert model.get_input_embeddings().weight.dtype == torch.float32
        prompt = torch.randn(rows, 3, 16, generator=torch.Generator().manual_seed(seed)).requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            losses = ipt.token_losses(model, prompt, ids, mask, labels)
            losses.sum().backward()
            out.append((losses.detach(), prompt.grad, ipt.generate(model, prompt.detach(), ids, mask, max_new_tokens=3)))
    (a, ga, ia), (b, gb, ib) = out
    assert torch.equal(a, b) and torch.equal(ga, gb) and torch.equal(ia, ib)
