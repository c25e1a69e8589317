"""
Files on disk: safetensors that hold only what trained, written so that nothing is lost.

A training checkpoint is one file: the trained tensors, each group's best-dev tensors, the Adam
moments, and the loop state (JSON, in the safetensors metadata). Every write goes to a temporary
file that is fsync'ed, renamed over the old one, and the folder fsync'ed: after a crash or a power
cut the name points at the old file or the new one, never at a half-written one. The checkpoint
before the last is kept beside it (checkpoint.prev.safetensors) as a way back if the last is damaged.

A stage folder is locked while a process trains in it (flock: the kernel drops it when the
process dies, even by kill -9), so two runs of the same command cannot interleave their writes. A
folder that many commands share (the world's cache) is built by one of them at a time, in a private
folder published by one rename (`Building`): the others wait, then read the finished folder.
"""
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import cli
import distributed


class CheckpointError(cli.UserError):
    """A file on disk that is missing, damaged, busy or does not fit; the message says what to do."""


def _fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_durably(write, path, keep_previous=False):
    """write(tmp path) then rename over `path`, with fsyncs so the rename survives a power cut.
    A failing write (full disk, I/O error) leaves the old file as it was and says so.
    Under torchrun, rank 0 alone writes (every rank holds the same state)."""
    if not distributed.is_main():
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if keep_previous and path.is_file():                 # a hard link: `path` stays valid throughout
            prev = previous(path)
            link = prev.with_name(prev.name + ".tmp")
            link.unlink(missing_ok=True)
            os.link(path, link)
            os.replace(link, prev)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = "the previous version is intact" if path.is_file() else "nothing was written"
        raise CheckpointError(f"could not write {path}: {e.strerror or e}; {kept}. "
                              "Free space or fix the disk, then re-run the same command to resume.") from e


def write_text(path, text):
    """A small text file (config.json, results.tsv), written durably."""
    _replace_durably(lambda tmp: Path(tmp).write_text(text), path)


def previous(path):
    """Where the checkpoint before `path` is kept."""
    path = Path(path)
    return path.with_name(path.name.replace(".safetensors", ".prev.safetensors"))


def save(path, tensors, keep_previous=False, **metadata):
    """Write tensors (+ JSON-able metadata) to `path`; see the module docstring for the guarantees."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {k: json.dumps(v) for k, v in metadata.items()}
    _replace_durably(lambda tmp: save_file(tensors, tmp, metadata=meta), path, keep_previous)


def load(path, remedy="make it again"):
    """-> (tensors, metadata) with the metadata values decoded from JSON. A missing or damaged
    file raises CheckpointError naming it and `remedy` (what the user can do about it)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no file at {path}: {remedy}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except Exception as e:                                   # SafetensorError, JSON, truncated data …
        raise CheckpointError(f"{path} is damaged ({type(e).__name__}: {str(e)[:120]}): {remedy}") from e


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


# -----------------------------------------------------------------------------
# PEFT prompt-tuning adapters (peft 0.21): adapter_config.json + adapter_model.safetensors holding
# `prompt_embeddings` [P, H]. PEFT needs two settings spelled out: task_type (without it PEFT loads
# the weights into nothing, silently) and, for T5, num_transformer_submodules 1 (its seq2seq
# default allocates a second, decoder half and then expects [2P, H]; we prompt the encoder only).

def write_peft(folder, prompt, encoder_decoder, base_model=None):
    """prompt [P, H] -> a PEFT prompt-tuning adapter folder that PeftModel.from_pretrained loads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "PROMPT_TUNING", "task_type": "SEQ_2_SEQ_LM" if encoder_decoder else "CAUSAL_LM",
              "num_virtual_tokens": prompt.size(0), "token_dim": prompt.size(1), "num_transformer_submodules": 1,
              "prompt_tuning_init": "RANDOM", "base_model_name_or_path": base_model, "inference_mode": True}
    save_plain(folder / "adapter_model.safetensors", {"prompt_embeddings": prompt.detach().float().contiguous().cpu()})
    write_text(folder / "adapter_config.json", json.dumps(config, indent=2) + "\n")


def save_plain(path, tensors):
    """Tensors as transformers and PEFT write them (metadata format: pt), durably."""
    _replace_durably(lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}), path)


def read_peft(folder):
    """A PEFT prompt-tuning adapter folder -> its prompt [P, H]; CheckpointError if it is not one."""
    folder = Path(folder)
    remedy = "give a folder written by PEFT's save_pretrained for prompt tuning, or by tools/export_peft.py"
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, ValueError) as e:                       # JSON, UTF-8
        raise CheckpointError(f"{folder / 'adapter_config.json'} cannot be read ({str(e)[:120]}): {remedy}") from None
    if config.get("peft_type") != "PROMPT_TUNING":
        raise CheckpointError(f"{folder} is a {config.get('peft_type')} adapter, not prompt tuning: {remedy}")
    try:                                                     # PEFT's metadata is not JSON: no load()
        prompt = load_file(str(folder / "adapter_model.safetensors")).get("prompt_embeddings")
    except Exception as e:
        raise CheckpointError(f"{folder / 'adapter_model.safetensors'} cannot be read ({e}): {remedy}") from None
    if prompt is None or prompt.shape != (config["num_virtual_tokens"], config["token_dim"]):
        raise CheckpointError(f"{folder} holds no prompt_embeddings of {config['num_virtual_tokens']}×"
                              f"{config['token_dim']} (num_transformer_submodules "
                              f"{config.get('num_transformer_submodules')}; this project prompts the encoder only, 1)")
    return prompt.float()


def optimizer_tensors(optimizer):
    """The optimiser's per-parameter state as flat named tensors: opt.<index>.<name> (Adam: exp_avg,
    exp_avg_sq, step; Adafactor: factored moments, and step and RMS as plain numbers, kept as 0-d tensors)."""
    return {f"opt.{i}.{key}": value if torch.is_tensor(value) else torch.tensor(value, dtype=torch.float64)
            for i, state in optimizer.state_dict()["state"].items() for key, value in state.items()}


def restore_optimizer(optimizer, tensors):
    state = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    full = optimizer.state_dict()
    full["state"] = state
    optimizer.load_state_dict(full)


class Lock:
    """An exclusive lock on a folder for as long as the process trains in it. The second process
    is told who holds it (pid, host, start time, command) and stops before touching anything."""

    def __init__(self, folder):
        self.path = Path(folder) / ".lock"
        self.file = None

    def __enter__(self):
        if not distributed.is_main() or cli.check_only():   # under torchrun, rank 0 holds it for all
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise CheckpointError(f"{self.path.parent} is in use by {holder}. Wait for it to finish or stop it; "
                                  "the same command then resumes from its last checkpoint.") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                        f" ({' '.join(sys.argv)[:200]})")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        if self.file:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


class Building:
    """One builder at a time of a folder that commands share, published whole.

        with Building(root) as b:                  # waits for another builder, saying so on one line
            if not ready(root):                    # it may have built `root` while this one waited
                build_into(b.private())            # .<name>.building-<pid> beside root
                b.publish()                        # one rename: readers see the old folder or the new

    The lock (<parent>/.<name>.lock, flock) dies with its process, even by kill -9; what a killed
    builder left (its private folder, its name in the lock) is cleared by the next, saying what."""

    def __init__(self, root, say=print):
        self.root, self.say = Path(root), say
        self.lock = self.root.parent / f".{self.root.name}.lock"
        self.tmp, self.file = None, None

    def __enter__(self):
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.lock, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.say(f"waiting for {self.holder()} building {self.root}")
            fcntl.flock(self.file, fcntl.LOCK_EX)
        if self.holder(default=""):                  # a finished builder empties it: this one was killed
            self.say(f"cleared the lock of {self.holder()}, which no longer runs")
        for stale in (*self.root.parent.glob(f".{self.root.name}.building-*"),
                      *self.root.parent.glob(f".{self.root.name}.old-*"),
                      self.root.with_name(self.root.name + ".tmp")):        # .tmp: before builds were locked
            if stale.exists():
                shutil.rmtree(stale)
                self.say(f"removed {stale}, left by a builder that was stopped")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        self.file.flush()
        return self

    def holder(self, default="another process"):
        self.file.seek(0)
        return self.file.read().strip() or default

    def private(self):
        """An empty folder of this builder's own, beside root (the same file system: rename is atomic)."""
        self.tmp = self.root.parent / f".{self.root.name}.building-{os.getpid()}"
        self.tmp.mkdir()
        return self.tmp

    def publish(self):
        """The private folder becomes root in one rename; an old root is moved aside first, then removed."""
        old = self.root.parent / f".{self.root.name}.old-{os.getpid()}"
        if self.root.exists():
            self.root.replace(old)
        self.tmp.replace(self.root)
        _fsync_dir(self.root.parent)
        shutil.rmtree(old, ignore_errors=True)
        self.tmp = None

    def __exit__(self, *exc):
        if self.tmp:                                 # a failed build leaves nothing behind
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.file.seek(0)
        self.file.truncate()
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
