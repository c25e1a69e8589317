"""The README names only what exists: every `make` target it shows is in the Makefile, every file
or folder it names is in the repository, and no number is left to fill in."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert named and named <= targets, named - targets


def test_every_file_the_readme_names_exists():
    """A file in the files table's row of a folder (| `world/` | …) is that folder's."""
    named = set(re.findall(r"^\| `([\w-]+/)` \|", README, re.M))          # the folders themselves
    for line in README.splitlines():
        folder = re.match(r"\| `([\w-]+/)` \|", line)
        found = set(re.findall(r"`([\w./-]+\.(?:py|md|txt|png|sh))`", line)) | set(re.findall(r"\]\(([\w./-]+)\)", line))
        found |= set(re.findall(r"`([\w-]+/)`", line)) - {folder[1] if folder else ""}
        named |= {folder[1] + f if folder else f for f in found}
    own = {n for n in named if not n.startswith(("runs/", "../", "tasks/", "adapters/"))}
    assert own, "the README names no file"
    missing = sorted(n for n in own if not (ROOT / n).exists())
    assert not missing, missing


def test_no_placeholder_is_left():
    """A name in capitals with an underscore is a placeholder, unless the code reads it from the environment."""
    code = " ".join(p.read_text() for p in [*ROOT.glob("*.py"), *ROOT.glob("*/*.py")] if p.parent.name != "tests")
    read = set(re.findall(r"environ(?:\.get)?[\[(]\"([A-Z_]+)\"", code))
    assert {"IPT_NUMERICS", "IPT_CHECK_ONLY"} <= read
    assert not set(re.findall(r"\b[A-Z]{3,}_[A-Z_]{3,}\b", README)) - read
