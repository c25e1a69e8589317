"""PEFT compatibility: an exported prompt loads in PEFT and gives our logits (and, for T5, our
generations); a PEFT-written adapter reads back as the same prompt; --init-from-peft starts PT there."""
import copy
import importlib

import pytest
import torch
import torch.nn.functional as F

import checkpoint
import ipt
import train
from conftest import H, VOCAB, installed, needs
from test_train import args, metrics

pytestmark = needs(installed("peft"), "peft (requirements-dev.txt)")
peft = importlib.import_module("peft") if installed("peft") else None

P = 5


def rows(seed=0, B=3, T=7, L=4):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 5:] = 0                                                    # a padded row
    ids[1, 5:] = 0
    labels = torch.randint(3, VOCAB, (B, L), generator=g)
    return ids, mask, labels


def through_peft(model, prompt, folder, encoder_decoder):
    checkpoint.write_peft(folder, prompt, encoder_decoder, "tiny")
    return peft.PeftModel.from_pretrained(copy.deepcopy(model), folder).eval()


def test_t5_prompt_in_peft_gives_our_logits_and_generations(t5, tmp_path):
    prompt = torch.randn(P, H)
    ids, mask, labels = rows()
    model = through_peft(t5, prompt, tmp_path / "a", encoder_decoder=True)
    with torch.no_grad():
        theirs = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        ours = ipt.token_losses(t5, prompt, ids, mask, labels)
    assert torch.allclose(F.cross_entropy(theirs.transpose(1, 2), labels, reduction="none"), ours, atol=1e-5)
    generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
    assert torch.equal(generated, ipt.generate(t5, prompt, ids, mask, max_new_tokens=6))


def test_llama_prompt_in_peft_gives_our_target_losses_and_uncached_generations(llama, tmp_path):
    """Unpadded rows (PEFT pads nothing of its own): [P; x; y], the loss of each y token. PEFT's
    cached generate re-adds the prompt each step (the caveat in tools/export_peft.py): uncached it is ours."""
    prompt = torch.randn(P, H)
    ids, _, labels = rows()
    mask = torch.ones_like(ids)
    model = through_peft(llama, prompt, tmp_path / "a", encoder_decoder=False)
    with torch.no_grad():
        logits = model(input_ids=torch.cat([ids, labels], 1)).logits                 # (B, P+T+L, V)
        ours = ipt.token_losses(llama, prompt, ids, mask, labels)
    before_y = logits[:, P + ids.size(1) - 1:-1]                                     # predicts y
    assert torch.allclose(F.cross_entropy(before_y.transpose(1, 2), labels, reduction="none"), ours, atol=1e-5)
    generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(generated[:, ids.size(1):], ipt.generate(llama, prompt, ids, mask, max_new_tokens=6))


@pytest.mark.parametrize("seq2seq", [True, False])
def test_adapter_written_by_peft_reads_back_as_its_prompt(t5, llama, tmp_path, seq2seq):
    config = peft.PromptTuningConfig(task_type="SEQ_2_SEQ_LM" if seq2seq else "CAUSAL_LM", num_virtual_tokens=P,
                                     num_transformer_submodules=1)
    model = peft.get_peft_model(copy.deepcopy(t5 if seq2seq else llama), config)
    model.save_pretrained(tmp_path / "peft")
    expected = model.prompt_encoder["default"].embedding.weight.detach()
    assert torch.equal(checkpoint.read_peft(tmp_path / "peft"), expected)
    ours = tmp_path / "ours"
    checkpoint.write_peft(ours, expected, seq2seq)
    assert torch.equal(checkpoint.read_peft(ours), expected)


def test_what_is_not_a_prompt_adapter_is_named(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="adapter_config.json cannot be read"):
        checkpoint.read_peft(tmp_path)
    checkpoint.write_peft(tmp_path, torch.zeros(P, H), True)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(checkpoint.CheckpointError, match="LORA adapter, not prompt tuning"):
        checkpoint.read_peft(tmp_path)


@pytest.mark.slow
def test_exported_prompts_start_prompt_tuning_where_they_left_off(world, tmp_path):
    """PT → export_peft → PT --init-from-peft: the second run's first dev scores are the first
    run's best (same prompts, evaluated before any step would be a different test)."""
    from tools import export_peft
    train.main(args(world, "peft", "--stage", "pt", "--tasks-from", "test", steps=20))
    export_peft.main(["--from", str(world / "runs" / "peft" / "prompts-s100"), "--out", str(tmp_path / "ad")])
    stored = checkpoint.load(world / "runs" / "peft" / "prompts-s100" / "second-word.safetensors")[0]["prompt"]
    assert torch.equal(checkpoint.read_peft(tmp_path / "ad" / "second-word"), stored)
    train.main(args(world, "peft", "--stage", "pt", "--tasks-from", "test", "--lr", "1e-9",
                    "--init-from-peft", str(tmp_path / "ad"), steps=10))
    first = metrics(world / "runs" / "peft" / "pt-from-ad" / "metrics.jsonl")[0]
    best = float(open(world / "runs" / "peft" / "pt-s100-test" / "results.tsv").read().splitlines()[1].split("\t")[2])
    assert first["dev"]["second-word"] == pytest.approx(best)


@pytest.mark.slow
def test_an_ist_solution_exports_as_its_prompt(world, tmp_path):
    """export_peft --from <IST folder>: the adapter holds Proj_b(z) of the task's best z."""
    from tools import export_peft
    import stages
    for stage in ("pt", "msf", "ist"):
        train.main(args(world, "peft-ist", "--stage", stage, steps=10))
    ist = world / "runs" / "peft-ist" / "ist-d3-s100-default"
    export_peft.main(["--from", str(ist), "--task", "has-cat", "--out", str(tmp_path / "ad")])
    z, autoencoder = stages.load_ist_solution(ist, ["has-cat"])
    with torch.no_grad():
        assert torch.allclose(checkpoint.read_peft(tmp_path / "ad" / "has-cat"), autoencoder.decode(z)[0])
