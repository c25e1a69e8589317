"""tools/disk.py on the tiny shape: a finished fine-tuning task keeps its checkpoints only when asked,
and they hold 16 bytes a parameter, twice (the evaluation before kept as a way back)."""
import pytest

from tools import disk


@pytest.mark.slow
def test_a_finished_stage_keeps_its_checkpoints_only_when_asked(tmp_path):
    got = disk.fine_tuning_kept("tiny", tmp_path)
    assert got["deleted"] < 50_000                                   # config, metrics, results: kB
    weights = 4 * got["parameters"]
    assert 8 * weights <= got["kept"] - got["deleted"] <= 8 * weights + 200_000   # 2 × (param, best, m, v) + headers
