"""The world's files on disk, verified: the shipped pretrained model against the checksums it ships
with, and a built world (cache/world-<key>) against its own world.json, so that a damaged or mixed
copy is named with what to do instead of being used or silently retrained over. world/world.py builds."""
import hashlib
import json

import cli


class WorldError(cli.UserError):
    """A shipped model or a cached world that is damaged; the message says what to do."""


def shipped(root):
    """A shipped pretrained model's folder (world/shipped/world-<key>), verified against its checksums, or
    None when the repository ships none for that world."""
    if not root.exists():
        return None
    report = read_json(root / "pretraining.json", "restore it: git checkout -- world/shipped/")
    damaged = [name for name, digest in report.get("sha256", {}).items()
               if not (root / name).is_file() or file_hash(root / name) != digest]
    if damaged or "sha256" not in report:
        raise WorldError(f"{root / (damaged[0] if damaged else 'pretraining.json')} is damaged or missing (not the "
                         "shipped checksum): restore it with git checkout -- world/shipped/, or pretrain the model here "
                         "with python -m world.world --rebuild (7 min; other numbers than the README's)")
    return root


_VERIFIED = set()


def verified(root):
    """root, once its task files and model are those its world.json records (once per process). A
    mismatch means a damaged cache or one that two builders wrote into, never the machine: refused."""
    key = (root, (root / "world.json").stat().st_mtime_ns)             # a rebuilt world is verified again
    if key in _VERIFIED:
        return root
    fix = f"delete it (rm -r {root}) and run again, or python -m world.world --rebuild"
    recorded = read_json(root / "world.json", fix).get("pretraining", {})
    try:
        found = {"data": data_hash(root), **model_hashes(root)}
        expected = {"data": recorded.get("data"), **recorded.get("sha256", {})}
        if found["data"] != expected["data"] and "files" in recorded:        # which file: the first that differs
            files = file_hashes(root)
            expected = {name: recorded["files"].get(name) for name in sorted(set(files) | set(recorded["files"]))}
            found = {name: files.get(name) for name in expected}
    except OSError as e:
        raise WorldError(f"{e.filename} cannot be read ({e.strerror}): {fix}") from None
    wrong = next((name for name in expected if found.get(name) != expected[name]), None)
    if wrong:
        raise WorldError(f"{root / 'data' if wrong == 'data' else root / wrong}: not what {root / 'world.json'} "
                         f"records (a damaged cache, or one written by two builders at once): {fix}")
    _VERIFIED.add(key)
    return root


def read_json(path, fix):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WorldError(f"{path} cannot be read ({type(e).__name__}): {fix}") from None


MODEL_FILES = ("model/model.safetensors", "model/config.json", "model/tokenizer.json", "conditioner.safetensors")


def model_hashes(root):
    return {name: file_hash(root / name) for name in MODEL_FILES if (root / name).is_file()}


def file_hash(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def task_files(root):
    return sorted([*(root / "data").rglob("*.tsv"), root / "tasks.txt", *(root / "splits").glob("*.txt")])


def file_hashes(root):
    """Each task file's own hash, so that a damaged one is named."""
    return {str(path.relative_to(root)): file_hash(path) for path in task_files(root) if path.is_file()}


def data_hash(root):
    """SHA-256 (16 hex digits) of a world's task files, tasks.txt and splits: the same on every machine."""
    h = hashlib.sha256()
    for path in task_files(root):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]
