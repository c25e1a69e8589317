"""The paper's effects on the offline world, held by a reduced grid of the same runner as `make
paper`, in two parts sharing one run folder:

  FIG3      each split at its planted dimension and one either side (d* = 3 for cls and non-cls,
            d* + 1 = 4 for the random split: θ and which kind), one draw of the random subspace, no
            fine-tuning, no resampled data: Fig. 3's knees, in-type against out-of-type, IST
            against the random subspace and the reconstruction, and Fig. 4 (4.5 min on 2 cores of
            the Intel Xeon once the world is built; about 7 estimated on the AMD EPYC);
  ANALYSES  §4.3 on top: Fig. 5 at 25 % of the training tasks, Fig. 6 on 2K shots, Table 4 over
            3 seeds, all at the random split's 4; DID on four held-out tasks.

Margins hold on two draws of the world (`--world-seed 0` and `1`), each built and run on two kinds of
machine: an AMD EPYC (AVX-512) and an Intel Xeon (AMX), 2026-12-01/02. The two builds of one draw
differ in their bits (ceilings pick / colour 0.816 / 0.820 and 0.83 / 0.84 on draw 0), and world v7
lost its random-split knee to that (Intel: 1.07 / 0.92 / 1.16 at d_I = 3 / 4 / 5). E_rel^PT, draw 0
AMD | Intel, then draw 1 AMD | Intel:

  random T_test(IST) d_I = 3 / 4 / 5    0.87/1.00/1.00 | 0.79/1.03/1.01   0.85/0.97/1.00 | 0.84/0.98/1.00
  non-cls T_test^in(IST) d_I = 2 / 3 / 4 0.91/1.03/1.05 | 0.76/0.96/1.00   0.70/0.95/1.02 | 0.81/0.97/0.97
  cls T_test^in(IST) d_I = 2 / 3 / 4    0.76/0.93/0.94 | 0.93/1.01/1.01   0.73/0.90/0.95 | 0.68/0.98/0.96
  T_test^out(IST) at d*, non-cls / cls  0.00/0.32 | 0.00/0.29            0.00/0.00 | 0.00/0.04
  IST − random subspace at the planted d   0.57 to 0.81 (AMD, both draws) | 0.60 to 0.91 (Intel)
  IST − T_test(MSF), random at 4 /       0.06/0.08 | 0.13/0.05            0.26/0.09 | 0.11/0.07
    non-cls at 3
  Fig. 4 at d_I = 4, cls vs non-cls      0.95/0.60 | 0.94/0.57            0.99/0.78 | 1.00/0.54
    (nearest centroid) from z / drawn
  Fig. 5 T_test(IST) at 4, 25 % → 100 %  0.85→1.00 | 0.97→1.03            0.91→0.97 | 0.82→0.98
  Fig. 6 T_train^same(IST), 2K − K       +0.01 | +0.03                    −0.02 | −0.02
    (mean of d_I = 2–4)
  Table 4 std ×100: PT, IST, stage two   2.30/1.44/1.85 | 2.28/1.50/2.51  2.78/2.42/2.65 | 2.39/1.56/2.64
  Table 4 E_rel^PT of stage two          – | 0.99                         – | 1.01

World v9 ships that AMD build's model (shipped/), so every machine starts from its weights; the grid
from it on the AMD EPYC (2026-12-03, report of `make paper`'s folders) gave the AMD numbers above
again, and the step into the planted dimension less the step after it: random 0.125, non-cls 0.107,
cls 0.151. KNEE keeps about half of the smallest (and of v8's weakest curve, 0.08).

Each bound keeps about half of the smaller measured gap. The knee: 11 of the 12 curves step 0.12 or
more at the planted dimension, the twelfth (Intel, draw 0, cls) +0.08. Not asserted, because they do
not hold on every build: Fig. 4's separation in the two components drawn (z's largest spread is θ's;
the kind lies along a smaller direction), and stage two steadier than PT (Intel: less steady on both
draws). 8 held-out tasks of a kind × 100 test examples: one task moving 10 points moves E_rel by
about 0.02.
"""
import pytest

import evaluate
import experiments
import train

FIG3 = ["--dims", "2,3,4,5", "--split-dims", "random=3,4,5", "--split-dims", "non-cls=2,3,4",
        "--split-dims", "cls=2,3,4", "--no-ft", "--no-resampled", "--random-draws", "1", "--did-dims", "none", "--no-linear",
        "--no-mpt", "--no-transfer"]
KNEE = 0.05                       # the step into d* exceeds the step after it by this much (see above)
ANALYSES = [*FIG3, "--fractions", "25", "--fraction-dims", "4", "--stability-dim", "4", "--runs", "3"]


def e_rel(summary, split, challenge, dim):
    return next(r["E_rel_PT"] for r in summary["rows"]
                if (r["cell"].split, r["cell"].challenge, r["cell"].dim) == (split, challenge, dim))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tmp_path_factory.mktemp("paper")


@pytest.fixture(scope="module")
def fig3(run):
    summary = experiments.main(["--run", str(run), *FIG3, "--no-ablations"])
    print((run / "report.md").read_text())                            # the numbers, in CI's log
    return summary


@pytest.fixture(scope="module")
def analyses(run, fig3):
    summary = experiments.main(["--run", str(run), *ANALYSES])         # FIG3's stages are done: skipped
    print((run / "report.md").read_text())
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("split, held, planted", [("random", "T_test", 4), ("non-cls", "T_test^in", 3),
                                                  ("cls", "T_test^in", 3)])
def test_the_planted_dimension_is_the_knee(fig3, split, held, planted):
    at = lambda d: e_rel(fig3, split, f"{held}(IST)", d)
    into, after = at(planted) - at(planted - 1), at(planted + 1) - at(planted)
    assert into >= 0.04                                                # one below: lower (0.08 at least)
    assert abs(after) <= 0.12                                          # after: flat (0.07 at most)
    assert into - after >= KNEE                                        # a knee, not a ramp
    assert at(planted) >= 0.85


@pytest.mark.slow
def test_in_type_beats_out_of_type(fig3):
    """A subspace of one kind fails the other: it cannot even say which kind of answer to give."""
    for split in ("non-cls", "cls"):
        assert e_rel(fig3, split, "T_test^in(IST)", 3) - e_rel(fig3, split, "T_test^out(IST)", 3) >= 0.3


@pytest.mark.slow
def test_ist_beats_the_random_subspace_and_the_reconstruction(fig3):
    for split, held, d in (("random", "T_test", 4), ("non-cls", "T_test^in", 3), ("cls", "T_test^in", 3)):
        ist = e_rel(fig3, split, f"{held}(IST)", d)
        assert ist - e_rel(fig3, split, f"{held}(random)", d) >= 0.3
        if split != "cls":
            assert ist - e_rel(fig3, split, f"{held}(MSF)", d) >= 0.02  # the paper's Q2, point 2: the direction


@pytest.mark.slow
def test_fig4_separates_the_kinds(fig3):
    assert fig3["pca"]["kind"] >= 0.8                                  # chance: 0.5


@pytest.mark.slow
def test_more_training_tasks_generalise_better(analyses):
    assert e_rel(analyses, "random", "T_test(IST)", 4) - e_rel(analyses, "random_25", "T_test(IST)", 4) >= 0.03


@pytest.mark.slow
def test_with_2k_shots_ist_on_seen_tasks_stays_near_pt(analyses):
    """The paper's Fig. 6: with 2K shots T_train^same nears 100 % without passing it; with K shots
    reconstructing many tasks together lifts it above. Asserted as the mean over the grid's d_I:
    2K shots lift IST no further above PT than K shots do."""
    mean = lambda split: sum(e_rel(analyses, split, "T_train^same(IST)", d) for d in (2, 3, 4)) / 3
    assert mean("cls-2K") - mean("cls") <= 0.05


@pytest.mark.slow
def test_ist_is_more_stable_than_pt_and_stage_two_keeps_its_score(analyses):
    st = analyses["stability"]
    pt, ist, two = st["PT"], st["IST (d_I = 4)"], st["stage two: PT from IST"]
    assert pt["runs"] == ist["runs"] == two["runs"] == 3
    assert ist["std"] <= 0.93 * pt["std"]                              # 0.63 to 0.87 of PT's
    assert two["E_rel_PT"] >= 1.0 - 0.05


@pytest.mark.slow
def test_did_is_far_below_ist_at_equal_dimension(run, analyses):
    """Aghajanyan et al.'s DID at the random split's planted d on four held-out tasks, through train.py
    as the runner calls it."""
    ist = next(r for r in analyses["rows"] if (r["cell"].split, r["cell"].challenge, r["cell"].dim) == ("random", "T_test(IST)", 4))
    tasks = ist["cell"].tasks[::4]
    argv = list(ist["cell"].jobs[0].argv)                             # the runner's options for d_I = 4
    del argv[argv.index("--tasks-from"):argv.index("--tasks-from") + 2]
    did = {}
    for task in tasks:
        train.main([*argv, "--stage", "did", "--run", str(run / "did"), "--task", task])
        did.update(evaluate.read_results(run / "did" / f"did-d4-s100-{task}"))
    pt = ist["refs"]["PT"]
    rel = lambda scores: sum(scores[t] / pt[t] for t in tasks) / len(tasks)
    assert rel(ist["scores"]) - rel(did) >= 0.3


@pytest.mark.slow
def test_the_report_is_complete(analyses, run):
    text = (run / "report.md").read_text()
    assert "Missing runs" not in text and "## Table 4" in text and "## Fig. 5" in text
    for png in ("pca.png", "e_rel.png", "fractions.png", "shots.png"):
        assert (run / png).stat().st_size > 20_000
