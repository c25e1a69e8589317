"""tools/gpucheck.py, the device check, on a CPU and a tiny shape: every part is written, and each
optimisation that train.py applies computes the unoptimised step's loss and gradients exactly."""
import json

import pytest

from tools import gpucheck


@pytest.mark.slow
def test_the_device_check_runs_on_a_cpu_and_writes_every_part(tmp_path):
    parts = gpucheck.main(["--device", "cpu", "--shape", "tiny", "--tasks", "3", "--rows", "2", "--steps", "1",
                           "--prompt-len", "2", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "gpu-check.json").read_text()).keys() == parts.keys()
    assert {f"step: {v.name}" for v in gpucheck.VARIANTS} <= parts.keys()
    for v in gpucheck.VARIANTS:
        got = parts[f"step: {v.name}"]
        assert got["forward+backward"] > 0 and got["optimiser"] > 0
        if v.in_train and not v.tokens_per_forward:                     # the same arithmetic: the same bits
            assert got["loss_diff"] == 0 and got["max_grad_diff"] == 0 and got["max_param_diff_after_step"] == 0
    assert parts["the optimised step"]["GFLOP"] > 0 and parts["generation"]["own_rows_per_s"] > 0
    assert parts["generation"]["rows_differing"] == 0                      # fp32: the same answers
    assert parts["rank classification"]["largest_score_difference"] < 1e-4
    assert "## generation" in (tmp_path / "gpu-check.md").read_text()
