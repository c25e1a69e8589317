"""LoRA-MSF at real sizes (lora.py): Proj_b's size on SmolLM2-135M and T5-base, its start whatever the
library's scale, the mean update and the subspaces over the library's updates (lora_subspaces.py)."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, LlamaConfig, T5Config

import lora
import lora_subspaces
from test_ipt import seeds

# SmolLM2-135M-Instruct (its GGUF's config) and google/t5-base-lm-adapt (T5 v1.1 base), counted on the meta
# device: 134.5 M and 222.9 M (transformers ties T5's head here; the checkpoint's own head makes it 247.6 M)
REAL = {"SmolLM2-135M": (AutoModelForCausalLM, LlamaConfig(
            hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
            vocab_size=49152, tie_word_embeddings=True), 134_515_008),
        "T5-base": (AutoModelForSeq2SeqLM, T5Config(
            d_model=768, d_ff=2048, d_kv=64, num_heads=12, num_layers=12, vocab_size=32128,
            feed_forward_proj="gated-gelu"), 222_903_552)}


@pytest.mark.parametrize("name", REAL)
def test_proj_b_is_at_most_a_tenth_of_the_plm_at_the_defaults(name):
    kind, config, size = REAL[name]
    with torch.device("meta"):
        plm = kind.from_config(config)
        shape = lora.target_layers(plm, lora.DEFAULT_TARGETS[config.is_encoder_decoder], 8)   # r = 8, q and v
        ae = lora.LoraAutoencoder(shape.size, 5, plm.config.hidden_size, 16)   # d'_I = H, m = 16: the defaults
    assert sum(p.numel() for p in plm.parameters()) == size
    proj_b = sum(p.numel() for p in ae.proj_b.parameters())
    print(f"{name}: N = {shape.size:,}, Proj_b {proj_b:,} = {100 * proj_b / size:.1f} % of the PLM")
    assert proj_b <= 0.10 * size
    unfactored = (ae.proj_b[0].out_features + 1) * shape.size         # d'_I × N, the paper's last layer
    assert unfactored > 0.9 * size                                      # what the factoring saves: the PLM's size


def synthetic_shape(rank):
    return lora.LoraShape((("a.q", 12, 12), ("a.v", 12, 6), ("b.q", 12, 12)), rank)


def library_of(shape, K, scale, g):
    """K trained-looking LoRAs: A at PEFT's scale, B small and task-specific, all times `scale`."""
    pairs = [(torch.randn(K, shape.rank, i, generator=g) / i ** 0.5, torch.randn(K, o, shape.rank, generator=g) * 0.1)
             for _, i, o in shape.layers]
    return lora.canonical(shape, shape.join(pairs) * scale)


@settings(max_examples=40, deadline=None)
@given(K=st.integers(2, 6), rank=st.integers(1, 4), log_scale=st.floats(-4, 2), seed=seeds)
def test_msf_starts_with_a_relative_error_of_at_most_one_at_any_scale(K, rank, log_scale, seed):
    g = torch.Generator().manual_seed(seed)
    shape = synthetic_shape(rank)
    library = library_of(shape, K, 10.0 ** log_scale, g)
    torch.manual_seed(seed)
    ae = lora.LoraAutoencoder(shape.size, 2, 8, 4)
    with torch.no_grad():
        untrained = float(lora.delta_error(shape, ae(library), library))
    ae.start_at(shape, library)
    with torch.no_grad():
        started = float(lora.delta_error(shape, ae(library), library))
    assert started <= 1 + 1e-4, (started, log_scale)
    if log_scale < -1:                                                  # what the start is for
        assert untrained > 10, untrained


def test_a_library_of_one_update_starts_exact(K=4):
    shape = synthetic_shape(2)
    one = library_of(shape, 1, 1.0, torch.Generator().manual_seed(0))
    ae = lora.LoraAutoencoder(shape.size, 2, 8, 4)
    ae.start_at(shape, one.expand(K, -1))
    with torch.no_grad():
        assert float(lora.delta_error(shape, ae(one.expand(K, -1)), one.expand(K, -1))) < 1e-8


def formed(shape, theta, rank=2):
    """ΔW of each layer as the PLM reads it (the update is scaled by α / shape.rank, so a LoRA of rank K·r
    counts 1/K against one of rank r), formed and flattened over layers: (K, Σ out·in)."""
    return torch.cat([(B @ A).flatten(1) for A, B in shape.split(theta.double())], 1) * rank / shape.rank


def test_the_mean_update_is_the_truncated_svd_of_the_formed_mean():
    shape = synthetic_shape(2)
    library = library_of(shape, 5, 1.0, torch.Generator().manual_seed(1))
    got = lora.mean_update(shape, library)[None]
    for (A, B), (A_lib, B_lib) in zip(shape.split(got.double()), shape.split(library.double())):
        mean = (B_lib @ A_lib).mean(0)
        U, S, Vh = torch.linalg.svd(mean)
        torch.testing.assert_close(B[0] @ A[0], U[:, :2] * S[:2] @ Vh[:2], rtol=1e-5, atol=1e-7)


def test_the_update_subspaces_are_the_mean_update_and_its_principal_directions():
    shape = synthetic_shape(2)
    g = torch.Generator().manual_seed(2)
    library = library_of(shape, 5, 1.0, g)
    flat = formed(shape, library)                                      # (K, Σ out·in)
    mean = lora_subspaces.build("delta-mean", shape, 1, library, g)
    assert mean.shape.rank == 5 * 2 and mean.d == 0
    torch.testing.assert_close(formed(mean.shape, mean.decode(mean.start(1))), flat.mean(0, keepdim=True))
    pca = lora_subspaces.build("delta-pca", shape, 3, library, g)
    eye = torch.eye(3, dtype=torch.float64)
    directions = formed(pca.shape, pca.decode(eye.float())) - flat.mean(0)             # D_j, (3, Σ out·in)
    torch.testing.assert_close(directions @ directions.T, eye, rtol=0, atol=1e-4)      # orthonormal
    _, _, Vh = torch.linalg.svd(flat - flat.mean(0), full_matrices=False)              # the formed PCA
    torch.testing.assert_close((Vh[:3] @ directions.T).abs(), eye, rtol=0, atol=1e-3)  # the same directions
    z = torch.randn(2, 3, generator=g)
    torch.testing.assert_close(formed(pca.shape, pca.decode(z)), flat.mean(0) + z.double() @ directions,
                               rtol=1e-4, atol=1e-5)
    fixed = lora_subspaces.build("delta-mean-r", shape, 1, library, g)
    torch.testing.assert_close(fixed.decode(fixed.start(1))[0], lora.mean_update(shape, library))
    with pytest.raises(ValueError, match="5 training LoRAs' updates has 4 directions"):
        lora_subspaces.build("delta-pca", shape, 5, library, g)


@settings(max_examples=20, deadline=None)
@given(K=st.integers(2, 6), d=st.integers(1, 3), log_scale=st.floats(-4, 2), seed=seeds)
def test_lora_ist_reads_z_in_the_units_of_the_training_codes(K, d, log_scale, seed):
    """z = 0 decodes the training tasks' mean code and z_k = (Proj(θ̃_k) − μ) / σ decodes task k's own
    reconstruction; those z have mean 0 and spread 1 whatever the scale the codes came out at."""
    g = torch.Generator().manual_seed(seed)
    shape = synthetic_shape(2)
    library = library_of(shape, K, 10.0 ** log_scale, g)
    torch.manual_seed(seed)
    ae = lora.LoraAutoencoder(shape.size, d, 8, 4)
    ae.start_at(shape, library)
    with torch.no_grad():
        ae.proj.weight.mul_(50.0)                                      # codes in the tens, as MSF leaves them
        ae.proj_b[-1].weight.normal_(generator=g)
        codes = ae.encode(library)
        coded = lora_subspaces.Coded(ae, library)
        z = (codes - coded.mu) / coded.sigma
        torch.testing.assert_close(coded.decode(z), ae(library), rtol=1e-4, atol=1e-4 * 10.0 ** log_scale)
        torch.testing.assert_close(coded.decode(torch.zeros(1, d))[0], ae.decode(codes.mean(0, keepdim=True))[0])
    torch.testing.assert_close(z.mean(0), torch.zeros(d), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(d), atol=1e-4, rtol=0)
