"""Properties of the model pieces in ipt.py: shapes, the prompt touching only the encoder input,
per-row prompts, gradient flow into exactly the intended tensors, and generation."""
import pytest
import torch
from hypothesis import given, strategies as st

import ipt
import stages
from conftest import H, VOCAB, tiny_t5

seeds = st.integers(0, 2**31 - 1)


def random_batch(g, B, T, L):
    ids = torch.randint(2, VOCAB, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask[torch.arange(T) >= lengths[:, None]] = 0                       # right padding
    ids[mask == 0] = 0
    labels = torch.randint(2, VOCAB, (B, L), generator=g)
    labels[:, -1] = 1                                                  # </s>
    return ids, mask, labels


def snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


# --- §3.1 prompt tuning ----------------------------------------------------------------------

@given(B=st.integers(1, 3), T=st.integers(1, 7), P=st.integers(0, 5), shared=st.booleans(), seed=seeds)
def test_prepend_prompt_shapes(t5, B, T, P, shared, seed):
    g = torch.Generator().manual_seed(seed)
    ids, mask, _ = random_batch(g, B, T, 2)
    embeds = t5.get_input_embeddings()(ids)
    prompt = torch.randn(*(() if shared else (B,)), P, H, generator=g)
    out, out_mask = ipt.prepend_prompt(prompt, embeds, mask)
    assert out.shape == (B, P + T, H) and out_mask.shape == (B, P + T)
    assert torch.equal(out[:, P:], embeds) and torch.equal(out_mask[:, P:], mask)
    assert out_mask[:, :P].all()


@given(B=st.integers(1, 3), T=st.integers(1, 7), L=st.integers(1, 4), seed=seeds)
def test_empty_prompt_is_exactly_the_plain_model(t5, B, T, L, seed):
    ids, mask, labels = random_batch(torch.Generator().manual_seed(seed), B, T, L)
    plain = t5(input_ids=ids, attention_mask=mask, labels=labels).logits
    enc, enc_mask = ipt.encode(t5, torch.zeros(0, H), ids, mask)
    prompted = t5(encoder_outputs=enc, attention_mask=enc_mask,
                  decoder_input_ids=t5.prepare_decoder_input_ids_from_labels(labels=labels)).logits
    assert torch.equal(plain, prompted)


@given(P=st.integers(1, 4), seed=seeds)
def test_prompt_changes_only_encoder_inputs(t5, P, seed):
    g = torch.Generator().manual_seed(seed)
    ids, mask, labels = random_batch(g, 2, 5, 3)
    seen = {}
    hooks = [t5.get_encoder().register_forward_pre_hook(
                 lambda m, a, kw: seen.setdefault("enc", []).append(kw["inputs_embeds"]), with_kwargs=True),
             t5.get_decoder().register_forward_pre_hook(
                 lambda m, a, kw: seen.setdefault("dec", []).append(kw["input_ids"]), with_kwargs=True)]
    try:
        ipt.token_losses(t5, None, ids, mask, labels)
        ipt.token_losses(t5, torch.randn(P, H, generator=g), ids, mask, labels)
    finally:
        for h in hooks:
            h.remove()
    plain, prompted = seen["enc"]
    assert prompted.shape[1] == plain.shape[1] + P and torch.equal(prompted[:, P:], plain)
    assert torch.equal(seen["dec"][0], seen["dec"][1])                 # decoder sees the same inputs


def assert_rows_match_rows_run_alone(plm, B, P, seed):
    """Each row of a batch with per-row prompts gives what it gives alone, cut to its own length:
    neither its batch-mates' prompts nor their padding reach it."""
    g = torch.Generator().manual_seed(seed)
    ids, mask, labels = random_batch(g, B, 6, 3)
    prompts = torch.randn(B, P, H, generator=g)
    together = ipt.token_losses(plm, prompts, ids, mask, labels)
    for b in range(B):
        n = int(mask[b].sum())
        alone = ipt.token_losses(plm, prompts[b], ids[b:b + 1, :n], mask[b:b + 1, :n], labels[b:b + 1])
        torch.testing.assert_close(together[b:b + 1], alone, rtol=1e-5, atol=1e-6)


@given(B=st.integers(2, 4), P=st.integers(1, 4), seed=seeds)
def test_per_row_prompts_match_rows_run_alone(t5, B, P, seed):
    assert_rows_match_rows_run_alone(t5, B, P, seed)


def test_per_task_mean_is_the_token_mean_of_each_task():
    losses = torch.tensor([[1., 3.], [5., 0.], [2., 2.]])
    labels = torch.tensor([[4, 4], [4, ipt.IGNORE], [4, 4]])
    task_idx = torch.tensor([0, 1, 0])
    # task 0: tokens 1, 3, 2, 2 -> 2.0; task 1: one token 5 -> 5.0; task 2 has no rows -> 0
    assert ipt.per_task_mean(losses, labels, task_idx, 3).tolist() == [2.0, 5.0, 0.0]


@given(P=st.integers(0, 3), seed=seeds)
def test_generate_equals_greedy_decoding_by_hand(t5, P, seed):
    g = torch.Generator().manual_seed(seed)
    ids, mask, _ = random_batch(g, 2, 5, 1)
    prompt = torch.randn(P, H, generator=g)
    out = ipt.generate(t5, prompt, ids, mask, max_new_tokens=6)
    enc, enc_mask = ipt.encode(t5, prompt, ids, mask)
    for b in range(2):
        dec = torch.tensor([[t5.config.decoder_start_token_id]])
        for _ in range(6):
            logits = t5(encoder_outputs=(enc.last_hidden_state[b:b + 1],), attention_mask=enc_mask[b:b + 1],
                        decoder_input_ids=dec).logits
            dec = torch.cat([dec, logits[:, -1].argmax(-1, keepdim=True)], 1)
            if dec[0, -1] == t5.config.eos_token_id:
                break
        n = dec.size(1)
        assert torch.equal(out[b, :n], dec[0])
        assert (out[b, n:] == t5.config.pad_token_id).all()            # finished rows are padded


# --- initialisations ---------------------------------------------------------------------------

@given(P=st.integers(1, 80), seed=seeds)
def test_initialisations(t5, P, seed):
    g = torch.Generator().manual_seed(seed)
    emb = t5.get_input_embeddings().weight
    assert ipt.init_normal(P, H, g).shape == (P, H)
    vocab = ipt.init_sampled_vocab(emb, P, g, population=50)
    assert vocab.shape == (P, H)
    rows = [(emb[:50] == row).all(1).nonzero() for row in vocab]        # every row is a vocab row
    assert all(len(r) for r in rows)
    if P <= 50:                                                        # without replacement when possible
        assert len({int(r[0]) for r in rows}) == P
    labels = ipt.init_class_labels(emb, [[3, 4], [9]], P, g)
    assert labels.shape == (P, H)
    torch.testing.assert_close(labels[0], (emb[3] + emb[4]) / 2)
    if P > 1:
        assert torch.equal(labels[1], emb[9])
    assert not labels.requires_grad


# --- §3.2 MSF and IST ----------------------------------------------------------------------------

@given(K=st.integers(1, 4), P=st.integers(1, 4), d_I=st.integers(1, 6), hidden=st.integers(1, 12), seed=seeds)
def test_autoencoder_shapes_and_finite_decode(K, P, d_I, hidden, seed):
    g = torch.Generator().manual_seed(seed)
    ae = ipt.PromptAutoencoder(P, H, d_I, hidden)
    prompts = torch.randn(K, P, H, generator=g)
    assert ae.encode(prompts).shape == (K, d_I)
    z = torch.randn(K, d_I, generator=g) * 100
    decoded = ae.decode(z)
    assert decoded.shape == (K, P, H) and torch.isfinite(decoded).all()
    assert ae(prompts).shape == (K, P, H)
    assert ipt.PromptAutoencoder(P, H, d_I).proj_b[0].out_features == H  # d'_I defaults to H


@given(K=st.integers(1, 5), d_I=st.integers(1, 8), seed=seeds)
def test_ist_trains_exactly_K_times_d_I_numbers(K, d_I, seed):
    g = torch.Generator().manual_seed(seed)
    ist = ipt.IntrinsicPrompts(ipt.PromptAutoencoder(3, H, d_I), ipt.init_z("normal", K, d_I, g))
    assert sum(p.numel() for p in ist.parameters() if p.requires_grad) == K * d_I


def test_init_z_kinds():
    g = torch.Generator().manual_seed(0)
    assert ipt.init_z("zeros", 3, 2, g).abs().sum() == 0
    assert ipt.init_z("normal", 1000, 4, g).std().item() == pytest.approx(0.02, rel=0.1)
    codes = torch.tensor([[1., 2.], [3., 6.]])
    assert ipt.init_z("mean", 3, 2, g, codes).tolist() == [[2., 4.]] * 3
    with pytest.raises(ValueError, match="codes"):
        ipt.init_z("mean", 3, 2, g)
    with pytest.raises(ValueError, match="unknown"):
        ipt.init_z("uniform", 3, 2, g)


def make_stage(stage, t5, K, P, d_I, g):
    """The module whose parameters should train in each stage, and the names of those that must."""
    if stage == "pt":
        return ipt.SoftPrompts(torch.randn(K, P, H, generator=g))
    if stage == "msf":
        return ipt.ReconstructedPrompts(ipt.PromptAutoencoder(P, H, d_I, 8), torch.randn(K, P, H, generator=g))
    if stage == "ist":
        return ipt.IntrinsicPrompts(ipt.PromptAutoencoder(P, H, d_I, 8), ipt.init_z("normal", K, d_I, g))
    raise ValueError(stage)


def assert_gradients_reach_only_the_stage(plm, stage, K, P, d_I, seed):
    """One step of a stage on any PLM: gradients reach exactly the stage's tensors of the tasks in
    the batch, the PLM gets none and stays bit-identical, absent tasks stay untouched."""
    g = torch.Generator().manual_seed(seed)
    module = make_stage(stage, plm, K, P, d_I, g)
    ids, mask, labels = random_batch(g, 4, 5, 3)
    task_idx = torch.randint(K, (4,), generator=g)
    frozen_before, module_before = snapshot(plm), snapshot(module)
    losses = ipt.token_losses(plm, module(task_idx), ids, mask, labels)
    task_lm = ipt.per_task_mean(losses, labels, task_idx, K)
    loss = (ipt.msf_objective(task_lm, module.reconstruction_error(task_idx.unique()), 1.0)
            if stage == "msf" else task_lm.sum())
    loss.backward()
    present = set(task_idx.tolist())
    expected = {"pt": {f"prompts.{k}" for k in present},
                "ist": {f"z.{k}" for k in present},
                "msf": {n for n, _ in module.named_parameters()}}[stage]
    with_grad = {n for n, p in module.named_parameters() if p.grad is not None}
    assert with_grad == expected
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
    assert all(p.grad is None for p in plm.parameters())
    torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=0.1).step()
    after = snapshot(module)
    for n, p in snapshot(plm).items():
        assert torch.equal(p, frozen_before[n]), n                      # PLM bit-identical
    changed = {n for n in after if not torch.equal(after[n], module_before[n])}
    assert changed == expected                                         # absent tasks untouched


@pytest.mark.parametrize("stage", ["pt", "msf", "ist"])
@given(K=st.integers(1, 3), P=st.integers(1, 3), d_I=st.integers(1, 4), seed=seeds)
def test_gradients_reach_only_the_stage_parameters(t5, stage, K, P, d_I, seed):
    """After google prompt-tuning's test_only_prompts_are_updated and PEFT's frozenness checks."""
    assert_gradients_reach_only_the_stage(t5, stage, K, P, d_I, seed)


def test_full_fine_tuning_gradients_reach_every_plm_weight():
    t5 = tiny_t5(seed=1).train()
    g = torch.Generator().manual_seed(0)
    ids, mask, labels = random_batch(g, 3, 5, 3)
    ipt.token_losses(t5, None, ids, mask, labels).sum().backward()
    missing = [n for n, p in t5.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_freeze_leaves_nothing_trainable_and_turns_dropout_off():
    t5 = tiny_t5(seed=2).train()
    assert ipt.freeze(t5) is t5 and not t5.training
    assert not any(p.requires_grad for p in t5.parameters())


# --- trainstep.forward_backward: length-sorted passes under a token budget ---------------------------

@pytest.mark.parametrize("kind", ["t5", "llama"])
@given(B=st.integers(1, 9), budget=st.integers(1, 60), stage=st.sampled_from(["pt", "msf"]), seed=seeds)
def test_chunked_step_has_the_gradient_of_one_pass(t5, llama, kind, B, budget, stage, seed):
    """--tokens-per-forward changes how a step is computed, not what: the loss and every gradient
    equal one pass over the whole padded batch, and every row is used exactly once."""
    import train
    import trainstep
    from data import Batch
    plm, g, K = {"t5": t5, "llama": llama}[kind], torch.Generator().manual_seed(seed), 3
    ids, mask, labels = random_batch(g, B, 8, 4)
    labels[torch.arange(4) >= torch.randint(1, 5, (B, 1), generator=g)] = ipt.IGNORE     # ragged targets
    batch = Batch(ids, mask, labels, torch.randint(0, K, (B,), generator=g))
    module = make_stage(stage, plm, K, 3, 2, g)
    st_ = msf_or_pt_stage(module, stage, K)
    results = []
    for tokens in (0, budget):
        cfg = train.Config(tokens_per_forward=tokens)
        loss = float(trainstep.forward_backward(cfg, plm, st_, batch, K, torch.autocast("cpu", enabled=False)))
        results.append((loss, {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}))
        module.zero_grad(set_to_none=True)
    (one, g1), (chunked, g2) = results
    assert chunked == pytest.approx(one, rel=1e-5) and g1.keys() == g2.keys()
    assert all(torch.allclose(g1[n], g2[n], atol=1e-6, rtol=1e-4) for n in g1)
    rows = [i for r, _, _ in trainstep.chunks(batch, budget) for i in r]
    assert sorted(rows) == list(range(B))


def msf_or_pt_stage(module, stage, K, alpha=1.0):
    """A Stage with the objective stages.py gives MSF (its α·reconstruction once a step) or PT."""
    if stage != "msf":
        return stages.Stage(module, module, [])
    every = torch.arange(K)
    return stages.Stage(module, module, [], objective=lambda task_lm, once: ipt.msf_objective(
        task_lm, module.reconstruction_error(every) if once else 0.0, alpha))


@pytest.mark.parametrize("stage", ["pt", "msf"])
@given(B=st.integers(1, 6), budget=st.integers(1, 40), seed=seeds)
def test_the_step_trains_the_objective_ipt_names(t5, stage, B, budget, seed):
    """The gradient a step applies (trainstep.forward_backward with stages.py's objective, in
    chunks) is the gradient of ipt.py's Eq. PT / Eq. MSF over the whole batch at once."""
    import train
    import trainstep
    from data import Batch
    g, K, alpha = torch.Generator().manual_seed(seed), 3, 0.7
    ids, mask, labels = random_batch(g, B, 6, 3)
    task_idx = torch.randint(0, K, (B,), generator=g)
    module = make_stage(stage, t5, K, 2, 2, g)
    st_ = stages.setup_msf(train.Config(alpha=alpha, intrinsic_dim=2), t5, None, ["a", "b", "c"], [],
                           module.pt_prompts) if stage == "msf" else stages.Stage(module, module, [])
    module = st_.module
    trainstep.forward_backward(train.Config(tokens_per_forward=budget), t5, st_, Batch(ids, mask, labels, task_idx),
                               K, torch.autocast("cpu", enabled=False))
    step = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    task_lm = ipt.per_task_mean(ipt.token_losses(t5, module(task_idx), ids, mask, labels), labels, task_idx, K)
    paper = (ipt.msf_objective(task_lm, module.reconstruction_error(torch.arange(K)), alpha) if stage == "msf"
             else ipt.multitask_objective(task_lm))
    paper.backward()
    assert step.keys() == {n for n, p in module.named_parameters() if p.grad is not None}
    for n, p in module.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(step[n], p.grad, atol=1e-6, rtol=1e-4)


def test_msf_reconstruction_is_added_once_whichever_rank_has_rows(t5, monkeypatch):
    """torchrun: the main rank adds α·rec even when the step's rows all went to other ranks, and
    the other ranks never do, so the summed gradient has it exactly once."""
    import distributed
    import train
    import trainstep
    from data import Batch
    g, K = torch.Generator().manual_seed(0), 2
    ids, mask, labels = random_batch(g, 2, 5, 3)
    module = make_stage("msf", t5, K, 2, 2, g)
    st_ = stages.setup_msf(train.Config(alpha=2.0, intrinsic_dim=2), t5, None, ["a", "b"], [], module.pt_prompts)
    monkeypatch.setattr(distributed, "world", lambda: 2)
    monkeypatch.setattr(distributed, "mine", lambda n: [])                              # every row elsewhere
    monkeypatch.setattr(distributed, "all_reduce_grads", lambda params: None)
    monkeypatch.setattr(distributed, "sum_tensor", lambda x: x)
    cpu, batch = torch.autocast("cpu", enabled=False), Batch(ids, mask, labels, torch.tensor([0, 1]))
    grads = {}
    for main in (True, False):
        monkeypatch.setattr(distributed, "is_main", lambda: main)
        loss = float(trainstep.forward_backward(train.Config(), t5, st_, batch, K, cpu))
        grads[main] = {n: p.grad for n, p in st_.module.named_parameters()}
        st_.module.zero_grad(set_to_none=True)
    (2.0 * st_.module.reconstruction_error(torch.arange(K))).backward()
    assert loss == 0.0 and all(g is None for g in grads[False].values())
    for n, p in st_.module.named_parameters():
        torch.testing.assert_close(grads[True][n], p.grad)


@given(sizes=st.lists(st.lists(st.integers(1, 40), min_size=0, max_size=4), min_size=1, max_size=6),
       scale=st.floats(1e-3, 1e3), max_norm=st.floats(0.01, 10.0), seed=seeds)
def test_clipping_every_task_at_once_is_bit_equal_to_clipping_each(sizes, scale, max_norm, seed):
    """trainstep.clip_per_group against clip_grad_norm_ per group: the same bits, for groups of one
    tensor (a task's prompt or z), of several (MSF, FT), and tensors without a gradient (absent tasks)."""
    import trainstep
    g = torch.Generator().manual_seed(seed)
    make = lambda: [[torch.nn.Parameter(torch.zeros(n)) for n in group] for group in sizes]
    ours, theirs = make(), make()
    for a, b in zip((p for grp in ours for p in grp), (p for grp in theirs for p in grp)):
        if torch.rand(1, generator=g) < 0.8:
            a.grad = scale * torch.randn(a.shape, generator=g)
            b.grad = a.grad.clone()
    trainstep.clip_per_group(ours, max_norm)
    for group in theirs:
        torch.nn.utils.clip_grad_norm_(group, max_norm)
    for a, b in zip((p for grp in ours for p in grp), (p for grp in theirs for p in grp)):
        assert (a.grad is None) == (b.grad is None) and (a.grad is None or torch.equal(a.grad, b.grad))


def test_out_of_memory_halves_the_passes_and_keeps_the_gradient(t5, monkeypatch):
    """A device that fits at most 20 padded tokens a pass (simulated): the step is redone in
    passes of half as many tokens until it fits, with the gradient of one pass; a single row
    that does not fit is an error that says what to lower."""
    import train
    import trainstep
    from data import Batch, UserError
    g, K = torch.Generator().manual_seed(0), 3
    ids, mask, labels = random_batch(g, 6, 8, 4)
    batch = Batch(ids, mask, labels, torch.tensor([0, 1, 2, 0, 1, 2]))
    module = make_stage("pt", t5, K, 3, 2, g)
    stage = stages.Stage(module, module, [])
    cpu = torch.autocast("cpu", enabled=False)
    expected = float(trainstep.forward_backward(train.Config(), t5, stage, batch, K, cpu))
    grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    module.zero_grad(set_to_none=True)
    real = ipt.token_losses

    def small_device(plm, prompt, input_ids, attention_mask, labels, *rest):
        if input_ids.numel() + labels.numel() > 20:
            raise torch.OutOfMemoryError("simulated")
        return real(plm, prompt, input_ids, attention_mask, labels, *rest)
    monkeypatch.setattr(ipt, "token_losses", small_device)
    cfg = train.Config()
    assert float(trainstep.forward_backward_in_memory(cfg, t5, stage, batch, K, cpu)) == pytest.approx(expected, rel=1e-5)
    assert 0 < cfg.tokens_per_forward <= 20
    assert all(torch.allclose(p.grad, grads[n], atol=1e-6) for n, p in module.named_parameters())
    monkeypatch.setattr(ipt, "token_losses", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError()))
    with pytest.raises(UserError, match="one row a forward pass"):
        trainstep.forward_backward_in_memory(train.Config(), t5, stage, batch, K, cpu)
