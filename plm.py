"""
The frozen pretrained language model: which one, how it is loaded, and how its answers are read.

`--model` is any Hugging Face name or folder saved with `save_pretrained`: an encoder-decoder (T5,
the paper's kind) or a decoder-only causal LM (Llama, Qwen, GPT-2 …); `config.is_encoder_decoder`
says which, and ipt.py takes the matching path. Its config is read first (cheap), so that every
check that needs only the model's sizes runs before the weights load; on a real model the load
takes a minute, a mistake found after it costs that minute.
"""
from pathlib import Path

import torch

import data
import evaluate
import ipt


def resolve_device(name):
    """'' -> cuda when present, else cpu. Raises UserError for a device this machine lacks."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise data.UserError(f"--device {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise data.UserError(f"--device {name}: this machine has no CUDA device (or torch was built without "
                                 "CUDA); use --device cpu, or leave --device empty to pick what is there")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise data.UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise data.UserError(f"--device {name!r}: use cpu, cuda or cuda:N")
    return device


def _cannot_load(cfg, e):
    return data.UserError(f"cannot load --model {cfg.model!r}: {str(e).splitlines()[0][:300]}\nGive a local folder "
                          "saved with save_pretrained, or a hub name on a machine that can reach the hub.")


def model_config(cfg):
    """The model's config alone (no weights): its kind and sizes, for the checks before loading."""
    from transformers import AutoConfig
    if not Path(cfg.model).expanduser().exists() and (cfg.model.startswith(("/", ".", "~")) or cfg.model.count("/") > 1):
        raise data.UserError(f"--model {cfg.model}: no such folder (a hub name has the form org/name)")
    try:
        config = AutoConfig.from_pretrained(cfg.model)
    except (OSError, ValueError) as e:
        raise _cannot_load(cfg, e) from e
    return config


def load(cfg, device):
    """-> (frozen model on `device`, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    kind = AutoModelForSeq2SeqLM if model_config(cfg).is_encoder_decoder else AutoModelForCausalLM
    try:
        model = kind.from_pretrained(cfg.model)
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.model)
    except (OSError, ValueError) as e:
        raise _cannot_load(cfg, e) from e
    if tokenizer.pad_token_id is None:                       # causal LMs often have none; any id will do,
        tokenizer.pad_token = tokenizer.eos_token            # padding is masked out
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return ipt.freeze(model.to(device)), tokenizer


# -----------------------------------------------------------------------------
# Reading the model's answers: generation, batched across tasks, scored by each task's metric

@torch.no_grad()
def predict(cfg, model, tokenizer, prompts, rows):
    """rows: [(task index, input ids)] -> decoded strings, batched across tasks (longest first,
    so that a batch's rows have similar lengths and little padding)."""
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][1]))
    out = [None] * len(rows)
    for start in range(0, len(order), cfg.eval_batch_size):
        chunk = order[start:start + cfg.eval_batch_size]
        batch = data.collate([(rows[i][0], rows[i][1], [0]) for i in chunk], tokenizer.pad_token_id).to(model.device)
        ids = ipt.generate(model, prompts(batch.task_idx), batch.input_ids, batch.attention_mask,
                           max_new_tokens=cfg.max_target_len, num_beams=cfg.num_beams)
        for i, text in zip(chunk, tokenizer.batch_decode(ids, skip_special_tokens=True)):
            out[i] = text.strip()
    return out


def score_tasks(cfg, model, tokenizer, prompts, prepared, tasks, split):
    """{task index: metric on `split`} for the given tasks, generated in one batched pass."""
    model.eval()
    rows = [(k, ids) for k in tasks for ids, _ in prepared[k][split]]
    preds = predict(cfg, model, tokenizer, prompts, rows)
    scores, i = {}, 0
    for k in tasks:
        refs = [list(r) for _, r in prepared[k][split]]
        scores[k] = evaluate.score(prepared[k]["metric"], preds[i:i + len(refs)], refs)
        i += len(refs)
    return scores
