"""The paper's effects on the offline world, held by a reduced grid of the same runner as `make
paper`: every split at d_I = 2, 3, 4 around the planted d* = 3, no fine-tuning (7 min on 2 cores).

Margins come from the full run (`make paper`, numbers in README): random split T_test(IST)
0.87 / 1.09 / 1.04 at d_I = 2 / 3 / 4; in-type vs out-of-type at d*: 0.99 vs 0.68 (cls), 0.97 vs
0.64 (non-cls); random subspace 0.48–0.51; T_test(MSF) 0.77–0.87. Each bound keeps at least half
of the measured gap, for another machine's bit-different world (the previous world moved unseen
E_rel by up to 0.15 at one d_I between two machines). 8 held-out tasks of a kind × 100 test
examples: one task moving 10 points moves E_rel by about 0.02.
"""
import pytest

import experiments


def e_rel(summary, split, challenge, dim):
    return next(r["E_rel_PT"] for r in summary["rows"]
                if (r["cell"].split, r["cell"].challenge, r["cell"].dim) == (split, challenge, dim))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    summary = experiments.main(["--run", str(out), "--dims", "2,3,4", "--no-ft"])
    print((out / "report.md").read_text())                            # the numbers, in CI's log
    return summary, out


@pytest.mark.slow
def test_the_planted_dimension_is_the_knee_of_the_random_split(grid):
    summary, _ = grid
    at = lambda d: e_rel(summary, "random", "T_test(IST)", d)
    assert at(3) - at(2) >= 0.1                                        # one below d*: clearly lower
    assert abs(at(4) - at(3)) <= 0.15                                  # after d*: flat
    assert at(3) >= 0.85


@pytest.mark.slow
def test_in_type_beats_out_of_type(grid):
    summary, _ = grid
    for split in ("non-cls", "cls"):
        assert e_rel(summary, split, "T_test^in(IST)", 3) - e_rel(summary, split, "T_test^out(IST)", 3) >= 0.15


@pytest.mark.slow
def test_ist_beats_the_random_subspace_and_the_reconstruction(grid):
    summary, _ = grid
    for split, held in (("random", "T_test"), ("non-cls", "T_test^in"), ("cls", "T_test^in")):
        ist = e_rel(summary, split, f"{held}(IST)", 3)
        assert ist - e_rel(summary, split, f"{held}(random)", 3) >= 0.25
        assert ist - e_rel(summary, split, f"{held}(MSF)", 3) >= 0.05  # the paper's Q2, point 2


@pytest.mark.slow
def test_the_report_is_complete(grid):
    summary, out = grid
    text = (out / "report.md").read_text()
    assert "Missing runs" not in text and "fine-tuning" in text
    assert (out / "pca.png").stat().st_size > 20_000 and (out / "e_rel.png").stat().st_size > 20_000
