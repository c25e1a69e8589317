"""make real in pieces (paper/pieces.py): what a stage computes, counted from its files, and the cut of a
plan into pieces that each fit a device command."""
from hypothesis import given, settings, strategies as st

import data
import train
from paper import pieces


def test_a_stage_counts_its_training_rows_and_each_scored_rows_options(tmp_path):
    for split, n in (("train", 4), ("dev", 6), ("test", 10)):
        f = data.task_file(tmp_path, "t", split)
        f.parent.mkdir(exist_ok=True)
        f.write_text("".join(f"x{i}\t{'yes' if i % 2 else 'no'}\n" for i in range(n)))
    tasks = {"t": data.Task("t", "ACC", "cls")}
    cfg = train.parse_args(["--data-dir", str(tmp_path), "--stage", "pt", "--steps", "50", "--batch-size", "4",
                            "--eval-every", "25", "--eval", "rank", "--max-test", "8"])
    # 50 steps × 4 rows; 2 evaluations × 6 dev rows + 8 test rows, each scored once per option (yes, no)
    assert pieces.rows(cfg, ["t"], tasks) == (200, (2 * 6 + 8) * 2)
    untuned = train.parse_args(["--data-dir", str(tmp_path), "--stage", "untuned", "--eval", "generate",
                                "--max-target-len", "5"])
    assert pieces.rows(untuned, ["t"], tasks) == (0, (6 + 10) * 5)   # a generated row: a forward a token
    assert pieces.projected(cfg, ["t"], tasks, "cpu") == 200 * 1.0 + 40 * 0.2


@settings(max_examples=50, deadline=None)
@given(seconds=st.lists(st.floats(0, 1200), max_size=30), minutes=st.floats(1, 10))
def test_pieces_keep_the_plan_order_and_fit_unless_one_stage_alone_does_not(seconds, minutes):
    stages = list(enumerate(seconds))
    cut = pieces.cut(stages, minutes)
    assert [s for piece in cut for s in piece] == stages                # every stage once, in order
    for piece in cut:
        assert piece and (len(piece) == 1 or sum(s for _, s in piece) <= 60 * minutes)
    for a, b in zip(cut, cut[1:]):                                      # no piece could have taken the next stage
        assert sum(s for _, s in a) + b[0][1] > 60 * minutes
