"""The paper's effects on the offline world, held by a reduced grid of the same runner as `make
paper`, in two parts sharing one run folder:

  FIG3      each split at its planted dimension and one either side (d* = 3 for cls and non-cls,
            d* + 1 = 4 for the random split: θ and which kind), one draw of the random subspace, no
            fine-tuning, no resampled data: Fig. 3's knees, in-type against out-of-type, IST
            against the random subspace and the reconstruction, and Fig. 4 (4.5 min on 2 cores of
            the Intel Xeon once the world is built; about 7 estimated on the AMD EPYC);
  ANALYSES  §4.3 on top: Fig. 5 at 5 % and 25 % of the training tasks, Fig. 6 on 2K shots, Table 4 over
            3 seeds, all at the random split's 4; DID on four held-out tasks.

Margins. No CPU family computes another's bits (world/numerics.py), so every effect asserted here must hold on
every draw of the arithmetic measured, with a margin. The draws (E_rel^PT; world/WORLD.md, v10's bands): on an
AMD EPYC with AVX-512 (2026-12-04) A pinned (the AMD reference: what every AMD CPU computes under the
pin), B native (AVX-512), C ATen default (scalar), D MKL_CBWR=COMPATIBLE; on an AVX2-only AMD EPYC
(2026-12-05, 1 thread) C' and D', the same two variants again; and I, an Intel Xeon with AMX under the
pin (`make paper`, issue 42; "–" where it did not report the cell):

                                          A        B        C        D        C'       D'       I        smallest margin
  knee into d*: random / non-cls / cls    .09/.19/.20 .13/.13/.17 .10/.10/.16 .13/.10/.07 .10/.10/.16 .08/.08/.18 .14/.23/.14  0.03 (≥ 0.04)
  step after d*, largest                  .05      .02      .02      .08      .02      .02      .05      0.04 (≤ 0.12)
  knee (into − after), random, non-cls    .08      .11      .09      .10      .11      .08      .17/–    0.03 (≥ KNEE)
  E_rel at d*, smallest                   .93      .93      .96      .87      .96      .93      .93      0.02 (≥ 0.85)
  in − out at d_I = 2, smallest           .73      –        –        –        .75      .76      –        0.23 (≥ 0.5)
  IST − random subspace, smallest         .65      .65      .63      .64      .63      .65      –        0.33 (≥ 0.3)
  IST − T_test(MSF) (non-cls at 3)        .05      .06      .06      .06      .06      .06      .09 (random) 0.03 (≥ 0.02)
  Fig. 4 kind separation                  .96      .95      .95      .95      .95      .99      –        0.15 (≥ 0.8)
  Fig. 5 T_test(IST) 100 % − 5 %          .26      .21      .28      .28      –        –        .40      0.11 (≥ FEW_TASKS)
  Fig. 6 2K − K (mean of d_I 2–4)         .00      .01      .00      .03      –        –        –        0.02 (≤ 0.05)
  Table 4 IST std / PT std                .70      .63      .91      .94      –        –        .51      0.06 (< 1)
  Table 4 E_rel^PT of stage two           1.02     1.02     1.01     1.02     –        –        –        0.06 (≥ 0.95)

What does not hold on every draw is not asserted. Fig. 5 at 25 %: the world predicts that 16 training
tasks already span the random split's 4 directions, and it measured 0.85 (B) and 0.99 (A, C) against
0.99–1.01 for all 64, a few held-out tasks whose IST stalls deciding it; 3 tasks (5 %) cannot span them.
Stage two steadier than PT holds on some builds only. cls's knee (the step into 3 larger than the
step after) fails on D, where two held-out colour tasks stall at d_I = 3, so the rise and the flat are
asserted for cls, the knee itself for random and non-cls. A subspace of one kind fails the other below
d* on every draw; from d* on it carries over on some (out-of-kind IST at d_I = 4: 0.00 or 0.71–0.74 for
non-cls, 0.64–0.93 for cls), so only d_I = 2 is asserted. 8 held-out tasks of a kind × 100 test
examples: one task moving 10 points moves E_rel by about 0.02.

The README's world tables give each cell the A value and its band over these draws.
MARGIN: the furthest any one draw lies outside the band of the others is 0.07 (I's non-cls T_test^in at
d_I = 2: 0.78 against 0.85–0.95), so a new draw is held within its band ± 0.08. Cells of a subspace of
one kind on the other kind from d* on are luck (above) and are not held to a band.
"""
import itertools
import re
from pathlib import Path

import pytest

import evaluate
from paper import experiments
from world import numerics
import train

FIG3 = ["--dims", "2,3,4,5", "--split-dims", "random=3,4,5", "--split-dims", "non-cls=2,3,4",
        "--split-dims", "cls=2,3,4", "--no-ft", "--no-resampled", "--random-draws", "1", "--did-dims", "none", "--no-linear",
        "--no-mpt", "--no-transfer"]
KNEE = 0.05                       # the step into d* exceeds the step after it by this much (see above)
FEW_TASKS = 0.1                   # Fig. 5: all 64 training tasks against 3 (0.21 to 0.28 measured, see above)
MARGIN = 0.08                     # a new draw beyond the README's bands (see above)
README = Path(__file__).resolve().parents[1] / "README.md"
ANALYSES = [*FIG3, "--fractions", "5,25", "--fraction-dims", "4", "--stability-dim", "4", "--runs", "3"]


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
    assert into >= 0.04                                                # one below: lower (0.07 at least)
    assert abs(after) <= 0.12                                          # after: flat (0.08 at most)
    if split != "cls":                                                 # cls: a knee on 3 of 4 variants (above)
        assert into - after >= KNEE                                    # a knee, not a ramp
    assert at(planted) >= 0.85


@pytest.mark.slow
def test_below_d_star_a_subspace_of_one_kind_fails_the_other(fig3):
    """Below d* a subspace of one kind cannot even say which kind of answer to give. From d* on it may
    carry over (cls's at d_I = 4 does on every draw, and at 3 on some: see above), so that is not asserted."""
    for split in ("non-cls", "cls"):
        assert e_rel(fig3, split, "T_test^in(IST)", 2) - e_rel(fig3, split, "T_test^out(IST)", 2) >= 0.5


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
    """Fig. 5 where the world has it: all 64 training tasks against 3 (5 %), fewer than the random split's
    d* + 1 = 4 directions. 16 (25 %) already span them, so from there the count matters little and luck
    decides (see above: not asserted)."""
    at = lambda split: e_rel(analyses, split, "T_test(IST)", 4)
    assert at("random") - at("random_5") >= FEW_TASKS


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
    assert ist["std"] < pt["std"]                                      # 0.63 to 0.94 of PT's (above)
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


BAND = re.compile(r"^(-?\d+\.\d\d) \((-?\d+\.\d\d)–(-?\d+\.\d\d)\)$")
ROW = re.compile(r"^(?:(\S+) split, )?(.+?) \(\d+\)$")           # "cls split, T_test^in(IST) (8)", "T_test(MSF) (16)"


def readme_tables():
    """The README's world tables -> {(split, challenge, d_I): (shown, low, high)}."""
    lines, cells = README.read_text().splitlines(), {}
    for start in (i for i, line in enumerate(lines) if line.startswith("| E_rel^PT") and "| d_I = " in line):
        columns = [c.strip().removeprefix("d_I = ") for c in lines[start].strip("|").split("|")][1:]
        for line in itertools.takewhile(lambda l: l.startswith("|"), lines[start + 2:]):
            label, *shown = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
            split, challenge = ROW.match(label).groups()
            for d, cell in zip(columns, shown):
                if cell:
                    cells[(split or "random", challenge, int(d))] = tuple(map(float, BAND.match(cell).groups()))
    return cells


@pytest.mark.slow
def test_this_machines_world_falls_within_the_readmes_bands(fig3):
    """Every README world cell is `value (low–high)`: the AMD reference's value under the pin, and its band
    over every draw of the arithmetic measured (world/WORLD.md, v10's bands). This machine is one more draw:
    each cell this grid computes must lie within its band, give or take MARGIN (above)."""
    cells = readme_tables()
    got = {(r["cell"].split, r["cell"].challenge, r["cell"].dim): r["E_rel_PT"] for r in fig3["rows"]}
    luck = lambda split, challenge, d: "^out" in challenge and d >= 3          # from d* on (above)
    checked = [key for key in cells if key in got and not luck(*key)]
    assert len(cells) >= 30 and len(checked) >= 15, (len(cells), len(checked))
    for key, (shown, low, high) in cells.items():
        assert low <= shown <= high, (key, shown, low, high)
    outside = {key: (round(got[key], 3), cells[key][1:]) for key in checked
               if not cells[key][1] - MARGIN <= got[key] <= cells[key][2] + MARGIN}
    assert not outside, (f"{numerics.state()}: outside the README's bands by more than {MARGIN}: {outside}; "
                         "a new draw of the arithmetic (world/WORLD.md: how to add it to the bands)")
