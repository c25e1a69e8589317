"""Shared fixtures: a tiny random T5 built from a T5Config (no download), frozen, module-scoped
so that hypothesis examples reuse it (function-scoped fixtures are a hypothesis health-check error);
and `needs`, the one way a test depends on something outside the repository."""
import importlib.util
import os
from pathlib import Path

from world import numerics

numerics.pin()                    # before torch: the world's tests on one code path (world/numerics.py)
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings
from transformers import T5Config, T5ForConditionalGeneration

settings.register_profile("dev", max_examples=15, deadline=None)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

VOCAB, H = 64, 16
CI = bool(os.environ.get("CI"))
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "crossfit"


def pytest_report_header():
    return numerics.state()


def needs(present, what):
    """Mark a test that needs `what` (real data, a declared requirement): skipped where it is
    absent, except under CI=true, where it fails naming what is missing (CI must run it)."""
    return pytest.mark.needs(present=bool(present), what=what)


def installed(module):
    return importlib.util.find_spec(module) is not None


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        if not mark.kwargs["present"]:
            if CI:
                pytest.fail(f"CI runs this test, and {mark.kwargs['what']} is missing", pytrace=False)
            pytest.skip(f"{mark.kwargs['what']} is missing")


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


def small_world_config():
    """A world of a few tasks, a small T5 and 5 pretraining steps: the world's machinery in seconds."""
    from world import world
    return world.WorldConfig(items=60, tasks_per_type=4, unseen_per_type=1, test_examples=10, d_model=32,
                             pretrain_steps=5, pretrain_batch=8)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """small_world_config()'s world, built once for every test that reads it (tests copy it to change it)."""
    from world import world
    return world.build(small_world_config(), tmp_path_factory.mktemp("small-world") / "world")
