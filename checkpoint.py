"""
Checkpoints: safetensors files that hold only what trained, written atomically.

A training checkpoint is one file, so it is never half-written: the trained tensors, each group's
best-dev tensors, the Adam moments, and the loop state (JSON, in the safetensors metadata).
"""
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model or run it is loaded into."""


def save(path, tensors, **metadata):
    """Write tensors (+ JSON-able metadata) to `path` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, tmp, metadata={k: json.dumps(v) for k, v in metadata.items()})
    os.replace(tmp, path)                                    # atomic on POSIX: old or new, never half


def load(path):
    """-> (tensors, metadata) with the metadata values decoded from JSON."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        return {k: f.get_tensor(k) for k in f.keys()}, meta


def fit(module, tensors, source):
    """Copy `tensors` into the same-named trainable parameters of `module`, or say what does not fit."""
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    wrong = [f"{n}: checkpoint {tuple(tensors[n].shape)} vs model {tuple(params[n].shape)}"
             for n in sorted(set(params) & set(tensors)) if tensors[n].shape != params[n].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{source} does not fit this model: " + "; ".join(
            filter(None, [f"missing {missing[:4]}" if missing else "",
                          f"unexpected {unexpected[:4]}" if unexpected else "", *wrong[:4]]))
            + ". Was it made with another --model, --prompt-len or --intrinsic-dim?")
    with torch.no_grad():
        for n, t in tensors.items():
            params[n].copy_(t)


def optimizer_tensors(optimizer):
    """Adam's per-parameter state as flat named tensors: adam.<index>.<exp_avg|exp_avg_sq|step>."""
    return {f"adam.{i}.{key}": value for i, state in optimizer.state_dict()["state"].items()
            for key, value in state.items() if torch.is_tensor(value)}


def restore_optimizer(optimizer, tensors):
    state = {}
    for name, value in tensors.items():
        if name.startswith("adam."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    full = optimizer.state_dict()
    full["state"] = state
    optimizer.load_state_dict(full)
