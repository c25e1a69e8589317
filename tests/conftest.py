"""Shared fixtures: a tiny random T5 built from a T5Config (no download), frozen, module-scoped
so that hypothesis examples reuse it (function-scoped fixtures are a hypothesis health-check error)."""
import os

import pytest
import torch
from hypothesis import settings
from transformers import T5Config, T5ForConditionalGeneration

settings.register_profile("dev", max_examples=15, deadline=None)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

VOCAB, H = 64, 16


def tiny_t5(seed=0, vocab=VOCAB, d_model=H):
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab, d_model=d_model, d_kv=4, d_ff=32, num_layers=2,
                      num_decoder_layers=1, num_heads=2, decoder_start_token_id=0,
                      pad_token_id=0, eos_token_id=1)
    return T5ForConditionalGeneration(config)


@pytest.fixture(scope="module")
def t5():
    from ipt import freeze
    return freeze(tiny_t5())


def tiny_llama(seed=0, vocab=VOCAB, hidden=H):
    """A tiny random decoder-only model (Llama architecture, as SmolLM2)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=32,
                                        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                        max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
                                        bos_token_id=2, tie_word_embeddings=False))


@pytest.fixture(scope="module")
def llama():
    from ipt import freeze
    return freeze(tiny_llama())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The end-to-end tests' tiny tasks and tiny T5 (test_train.make_world), one per test module."""
    from test_train import make_world
    return make_world(tmp_path_factory.mktemp("world"))
