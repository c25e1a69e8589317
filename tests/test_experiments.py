"""The experiment runner and its report: the plan covers every challenge of Fig. 3 on every split;
every number in the report equals its recomputation from the results files; a missing run is
named with its command; the PCA helpers; and the whole runner on real CrossFit files."""

import math
import shlex
import shutil
import statistics
import subprocess

import pytest
import torch

import data
from paper import experiments
from paper import report
from world import world
from runner import results
import stages
import train
from conftest import REAL, needs
from test_train import make_world


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = make_world(tmp_path_factory.mktemp("toy"))
    (root / "splits").mkdir()
    (root / "splits" / "random.txt").write_text("[train]\nfirst-word\nlast-word\nhas-cat\n[test]\nsecond-word\n")
    (root / "splits" / "cls.txt").write_text("[train]\nhas-cat\n[test_in]\n[test_out]\nsecond-word\n")
    (root / "splits" / "random_50.txt").write_text("[train]\nfirst-word\n[test]\nsecond-word\n")
    return root


def toy_args(toy, run, *extra):
    return experiments.parse_args(["--run", str(run), "--data-dir", str(toy / "data"), "--tasks-file",
                                   str(toy / "tasks.txt"), "--splits-dir", str(toy / "splits"), "--model",
                                   str(toy / "model"), "--prompt-len", "4", "--dims", "1,2", "--fractions", "50",
                                   "--did-dims", "2", "--stability-dim", "2", *extra])


def test_the_plan_has_every_challenge_of_fig3(toy, tmp_path):
    p = experiments.plan(toy_args(toy, tmp_path, "--splits", "random,cls"))
    got = {(c.split, c.challenge) for c in p.cells}
    assert {("random", ch) for ch in ["T_train(MSF)", "T_train^same(IST)", "T_train^diff(IST)", "T_test(MSF)",
                                      "T_test(IST)", "T_test(random)"]} <= got
    assert {("cls", ch) for ch in ["T_test^in(IST)", "T_test^out(IST)", "T_test^out(MSF)", "T_test^out(random)"]} <= got
    assert len({c.dim for c in p.cells}) == 2
    # each job is planned once, the references (untuned PLM, PT, FT) before anything that reads them,
    # MSF before its IST
    folders = [j.folder for j in p.jobs]
    assert len(folders) == len(set(folders)) and folders[:3] == [p.untuned.folder, p.pt.folder, p.ft.folder]
    for c in p.cells:
        if "IST" in c.challenge and "random" not in c.challenge:
            msf = next(j for j in p.jobs if j.folder.name == f"msf-d{c.dim}" and j.folder.parent == c.jobs[0].folder.parent)
            assert folders.index(msf.folder) < folders.index(c.jobs[0].folder)
    diff = next(c for c in p.cells if c.challenge == "T_train^diff(IST)").jobs[0]
    assert "--data-seed" in diff.argv and diff.argv[diff.argv.index("--data-seed") + 1] == "21"
    # the baselines on held-out tasks: three draws of the random subspace under three seeds, DID at its d only
    draws = next(c for c in p.cells if c.challenge == "T_test(random)" and c.dim == 1).jobs
    assert [option(j, "--seed") for j in draws] == [None, "43", "44"] and len({j.folder for j in draws}) == 3
    assert {c.dim for c in p.cells if "(DID)" in c.challenge} == {2}
    # beyond the paper: IST through the linear span of the training prompts, seen and held-out tasks alike
    assert {("random", "T_train^same(PCA)"), ("random", "T_test(PCA)"), ("cls", "T_test^in(PCA)"),
            ("cls", "T_test^out(PCA)")} <= got
    pca = next(c for c in p.cells if c.challenge == "T_test(PCA)" and c.dim == 2).jobs[0]
    assert option(pca, "--subspace") == "pca" and option(pca, "--prompt-store") == str(tmp_path / "prompts-s100")
    # MPT: one source on each split's training tasks and one target on its held-out tasks, drawn at every d_I
    mpt = [c for c in p.cells if c.split == "cls" and "(MPT)" in c.challenge]
    assert {(c.challenge, c.dim) for c in mpt} == {(ch, d) for ch in ("T_train(MPT)", "T_test^in(MPT)", "T_test^out(MPT)")
                                                   for d in (1, 2)}
    source, target = (next(c for c in mpt if c.challenge == ch).jobs[0] for ch in ("T_train(MPT)", "T_test^in(MPT)"))
    assert option(source, "--stage") == "mpt" and option(target, "--subspace") == "mpt"
    assert option(target, "--tasks-from") == "test_in,test_out"
    assert sum(option(j, "--stage") == "mpt" for j in p.jobs) == 2                  # one a split
    bare = experiments.plan(toy_args(toy, tmp_path, "--splits", "random", "--no-linear", "--no-mpt", "--no-transfer"))
    assert not any(x in c.challenge for c in bare.cells for x in ("(PCA)", "(MPT)"))
    assert not any(m.startswith("SPoT") for m in bare.stability)


def option(job, flag):
    return job.argv[job.argv.index(flag) + 1] if flag in job.argv else None


def test_the_ablations_are_planned_as_more_stages_of_the_same_runner(toy, tmp_path):
    p = experiments.plan(toy_args(toy, tmp_path, "--splits", "random,cls", "--runs", "3", "--fraction-dims", "1,2"))
    # Fig. 5: MSF on the fraction's split file, IST on the same held-out tasks, at the fraction d_I
    fig5 = [c for c in p.cells if c.split == "random_50"]
    assert {(c.challenge, c.dim) for c in fig5} == {("T_train(MSF)", 1), ("T_test(IST)", 1), ("T_train(MSF)", 2),
                                                    ("T_test(IST)", 2)}
    assert all(option(c.jobs[0], "--split").endswith("random_50.txt") for c in fig5)
    # Fig. 6: the toy has no 2K-shot files, and the report will say so instead of failing
    assert "no 32-shot files" in p.meta["shots"] and not any(c.split == "cls-2K" for c in p.cells)
    # Table 4: seed 42 reuses the plan's PT and FT; other seeds their own folders; stage two starts from
    # the IST run of the same seed; no run writes the prompt store MSF reads
    st = p.stability
    assert st["PT"][0] is p.pt and st["FT"][0] is p.ft and len({j.folder for j in st["PT"]}) == 3
    for i, (ist, two) in enumerate(zip(st["IST (d_I = 2)"], st["stage two: PT from IST"])):
        assert option(two, "--init-from-ist") == str(ist.folder) and option(two, "--seed") == option(ist, "--seed")
        assert option(ist, "--seed") == (str(42 + i) if i else None)
        assert option(two, "--tasks-from") == option(ist, "--tasks-from") == "test"
    # SPoT beside stage two, under the same seeds: nearest by the z of that seed's IST run, both starting
    # from the plan's PT prompts and writing their own
    for i, (ist, mean, near) in enumerate(zip(st["IST (d_I = 2)"], st["SPoT: PT from the mean prompt"],
                                              st["SPoT: PT from the nearest task's prompt"])):
        assert option(near, "--similar-by") == str(ist.folder) and option(mean, "--similar-by") is None
        assert option(mean, "--transfer-from") == option(near, "--transfer-from") == str(tmp_path / "prompts-s100")
        assert option(mean, "--seed") == option(near, "--seed") == option(ist, "--seed")
    writers = [train.parse_args(j.argv) for j in p.jobs if option(j, "--stage") == "pt"]
    stores = [stages.prompt_store(cfg) for cfg in writers]
    assert len(set(stores)) == len(stores) and stores[0] == tmp_path / "prompts-s100"
    for bad in (["--stability-dim", "5"], ["--did-dims", "2,x"], ["--runs", "0"], ["--random-draws", "-1"]):
        with pytest.raises(SystemExit):                                    # refused before anything runs
            toy_args(toy, tmp_path, *bad)


def test_two_k_shots_are_planned_where_the_files_exist(toy, tmp_path):
    for task in ("has-cat",):
        for split in ("train", "dev", "test"):
            src = data.task_file(toy / "data", task, split, 16, 100)
            data.task_file(toy / "data", task, split, 32, 100).write_text(src.read_text() * 2)
    p = experiments.plan(toy_args(toy, tmp_path, "--splits", "cls"))
    fig6 = [c for c in p.cells if c.split == "cls-2K"]
    pt2k = fig6[0].ref
    assert option(pt2k, "--k") == "32" and all(c.ref is pt2k and option(c.jobs[0], "--k") == "32" for c in fig6)
    assert {c.challenge for c in fig6} == {"T_train(MSF)", "T_train^same(IST)"} and len(fig6) == 4


def test_a_split_can_sweep_its_own_dims(toy, tmp_path):
    """tests/test_paper.py sweeps each split around its own planted dimension (--split-dims), without
    the resampled data's IST (--no-resampled)."""
    p = experiments.plan(toy_args(toy, tmp_path, "--splits", "random,cls", "--dims", "1,2,3", "--split-dims", "cls=1,2",
                                  "--split-dims", "random=2,3", "--did-dims", "none", "--no-ablations", "--no-resampled"))
    dims = lambda split: {c.dim for c in p.cells if c.split == split}
    assert not [c for c in p.cells if c.challenge == "T_train^diff(IST)"] and not [j for j in p.jobs if "--data-seed" in j.argv]
    assert dims("cls") == {1, 2} and dims("random") == {2, 3}
    assert not [j for j in p.jobs if option(j, "--stage") == "msf" and "/cls/" in str(j.folder) and
                option(j, "--intrinsic-dim") == "3"]
    assert p.meta["split_dims"] == {"random": [2, 3], "cls": [1, 2], "cls-2K": [1, 2]}
    for bad in (["--split-dims", "cls=4"], ["--split-dims", "mixed=1"], ["--split-dims", "cls"],
                ["--split-dims", "random=1", "--stability-dim", "2"], ["--pca-dim", "4"], ["--world-seed", "1"]):
        with pytest.raises(SystemExit):                                    # refused before anything runs
            toy_args(toy, tmp_path, "--dims", "1,2,3", *bad)


def fake_build(built, folder):
    """world.build, recording what it is asked to build: a folder with a world.json."""
    (folder / "world.json").write_text('{"pretraining": {"weights": "shipped (test)"}}')
    return lambda cfg: built.append(cfg) or folder


def test_a_bad_option_is_refused_before_the_world_is_built(monkeypatch, tmp_path):
    """Building the world can take minutes: every option is checked before it."""
    built = []
    monkeypatch.setattr(world, "build", fake_build(built, tmp_path))
    for bad in (["--dims", "1,x"], ["--split-dims", "cls=9"], ["--pca-dim", "7"], ["--runs", "0"]):
        with pytest.raises(SystemExit):
            experiments.parse_args(["--world-seed", "5", *bad])
    assert not built
    args = experiments.parse_args(["--world-seed", "5"])
    assert built == [world.WorldConfig(seed=5)] and args.planted == {"random": 4, "cls": 3, "non-cls": 3}
    assert args.source.endswith("its model shipped (test)")                # which build the report's numbers are from


def test_a_world_variant_is_checked_and_built_under_its_own_key(monkeypatch, tmp_path):
    built = []
    monkeypatch.setattr(world, "build", fake_build(built, tmp_path))
    for bad, says in ((["--world", "noise=1"], "not a world setting"), (["--world", "pretrain_steps=1.5"], "takes a int"),
                      (["--world", "pretrain_noise=1", "--data-dir", "x", "--model", "m"], "no offline world")):
        with pytest.raises(SystemExit, match=says):
            experiments.parse_args(bad)
    assert not built
    args = experiments.parse_args(["--world", "pretrain_noise=0", "--world", "pretrain_steps=5000"])
    assert built == [world.WorldConfig(pretrain_noise=0.0, pretrain_steps=5000)]
    assert built[0].key() != world.WorldConfig().key() and "pretrain_noise=0" in args.source
    assert args.data_dir == str(world.folder(built[0]) / "data")


@needs(shutil.which("make"), "make")
def test_make_paper_passes_a_world_variant_to_the_runner(monkeypatch, tmp_path):
    """make paper WORLD="a=1 b=2" is the runner's --world a=1 --world b=2, and the runner builds that world."""
    line = subprocess.run(["make", "-n", "-s", "paper", "WORLD=pretrain_noise=0.5 tasks_per_type=24"], text=True,
                          capture_output=True, check=True, cwd=experiments.data.HERE).stdout.strip().splitlines()[-1]
    argv = shlex.split(line)
    assert argv[1:3] == ["-m", "paper.experiments"]
    built = []
    monkeypatch.setattr(world, "build", fake_build(built, tmp_path))
    experiments.parse_args(argv[3:])
    assert built == [world.WorldConfig(pretrain_noise=0.5, tasks_per_type=24)]


def fake_results(job, scores):
    """A results.tsv as train.py writes it (fine-tuning: one per task folder)."""
    rows = lambda items: "task\tmetric\tdev\ttest\tsteps\tbest_step\n" + "".join(
        f"{t}\tEM\t0.0\t{s:.4f}\t1\t1\n" for t, s in items)
    if "ft" in job.folder.name:
        for t, s in scores.items():
            (job.folder / t).mkdir(parents=True, exist_ok=True)
            (job.folder / t / "results.tsv").write_text(rows([(t, s)]))
    else:
        job.folder.mkdir(parents=True, exist_ok=True)
        (job.folder / "results.tsv").write_text(rows(scores.items()))


@pytest.mark.parametrize("draws", [1, 2])
def test_every_report_number_is_recomputed_from_the_results_files(toy, tmp_path, draws):
    p = experiments.plan(toy_args(toy, tmp_path, "--splits", "random", "--msf-draws", str(draws)))
    tasks = list(data.load_tasks(toy / "tasks.txt"))[:4]
    g = torch.Generator().manual_seed(0)
    written = {}
    for job in p.jobs:
        scores = {t: round(0.05 + 0.9 * torch.rand(1, generator=g).item(), 4) for t in tasks}
        if job is not p.jobs[-1]:                                     # the last stays missing
            fake_results(job, scores)
            written[job.folder] = scores
    averaged = lambda jobs, t: sum(written[j.folder][t] for j in jobs) / len(jobs)
    summary = report.write(p, tmp_path)
    pt, ft, untuned = written[p.pt.folder], written[p.ft.folder], written[p.untuned.folder]
    per_task = [line.split("\t") for line in (tmp_path / "per_task.tsv").read_text().splitlines()[1:]]
    text = (tmp_path / "report.md").read_text()
    for row in summary["rows"]:
        c = row["cell"]
        if any(j.folder not in written for j in c.jobs):
            assert row["missing"]
            continue
        mine = {t: averaged(c.jobs, t) for t in c.tasks}              # the random subspace, MSF: over their draws
        assert row["E_abs"] == pytest.approx(sum(mine.values()) / len(mine))
        assert row["E_rel_PT"] == pytest.approx(sum(mine[t] / pt[t] for t in mine) / len(mine))
        assert row["E_rel_FT"] == pytest.approx(sum(mine[t] / ft[t] for t in mine) / len(mine))
        assert f"{row['E_rel_PT']:.2f} ({len(mine)})" in text
        lines = [r for r in per_task if r[:3] == [c.split, c.challenge, str(c.dim)]]
        assert {r[3]: float(r[4]) for r in lines} == pytest.approx(mine, abs=1e-4)
        assert all([float(x) for x in r[5:8]] == pytest.approx([pt[r[3]], ft[r[3]], untuned[r[3]]]) for r in lines)
    # PT against the untuned PLM, task by task
    wins = sum(pt[t] > untuned[t] for t in tasks)
    assert f"PT beats the untuned PLM on {wins} of {len(tasks)} tasks" in text
    assert all(f"| {t} | {100 * untuned[t]:.1f} | {100 * pt[t]:.1f} | {100 * (pt[t] - untuned[t]):+.1f} |" in text
               for t in tasks)
    # the missing stage is named, with the command that makes it
    assert "missing" in text and p.jobs[-1].command() in text
    assert (tmp_path / "e_rel.png").stat().st_size > 10_000
    # Table 4: each method's mean over tasks of the std across runs, and E_rel^PT of the run means
    held = p.meta["stability"]["tasks"]
    for method, jobs in p.stability.items():
        got = summary["stability"][method]
        if any(j.folder not in written for j in jobs):
            assert got is None
            continue
        std = lambda t: statistics.pstdev([written[j.folder][t] for j in jobs])
        assert got["std"] == pytest.approx(sum(std(t) for t in held) / len(held))
        assert got["E_rel_PT"] == pytest.approx(sum(averaged(jobs, t) / averaged(p.stability["PT"], t)
                                                    for t in held) / len(held))
        assert f"| {method} | {len(jobs)} | {len(held)} | {100 * got['std']:.2f} | {got['E_rel_PT']:.2f}" in text
    assert "## Fig. 5" in text and (tmp_path / "fractions.png").stat().st_size > 10_000
    assert ("mean over 2 draws of the MSF subspace" in text) == (draws == 2)


def test_a_stage_interrupted_part_way_is_not_done_and_the_report_names_it(toy, tmp_path):
    """Fine-tuning writes one results.tsv a task: with 2 of 4 written the stage is not done, the runner
    would run it again, E_rel^FT is not averaged over the two, and the report says what is partial."""
    p = experiments.plan(toy_args(toy, tmp_path, "--splits", "random", "--no-ablations"))
    tasks = p.ft.tasks
    for job in p.jobs:
        fake_results(job, {t: 0.5 for t in (tasks[:2] if job is p.ft else tasks)})
    assert not p.ft.done() and p.ft.progress() == f"partial: 2 of {len(tasks)} tasks have results"
    assert [j for j in p.jobs if not j.done()] == [p.ft]
    summary = report.write(p, tmp_path)
    assert all(math.isnan(r["E_rel_FT"]) for r in summary["rows"])
    text = (tmp_path / "report.md").read_text()
    assert f"{p.ft.command()}    # partial: 2 of {len(tasks)} tasks have results" in text


def test_every_count_printed_is_the_count_of_its_number(toy, tmp_path):
    """E_rel leaves out a task whose PT score is ≤ 0, a task without data is not trained (--allow-missing),
    and one with data only for the resampled seed has no PT to divide by: the count beside each number
    is its own, and the report names who is left out of which number, and why."""
    shutil.copytree(toy, tmp_path / "toy")
    for split in ("train", "dev", "test"):
        data.task_file(tmp_path / "toy" / "data", "first-word", split, 16, 100).unlink()
    p = experiments.plan(toy_args(tmp_path / "toy", tmp_path / "run", "--splits", "random", "--no-ablations",
                                  "--allow-missing"))
    assert "first-word" not in p.pt.tasks
    for job in p.jobs:
        fake_results(job, {t: 0.0 if job is p.pt and t == "last-word" else 0.5 for t in job.tasks})
    summary = report.write(p, tmp_path)
    text = (tmp_path / "report.md").read_text()
    same = next(r for r in summary["rows"] if r["cell"].challenge == "T_train^same(IST)" and r["cell"].dim == 1)
    assert same["n"] == 2 and same["n_PT"] == 1 and same["absent"] == ["first-word"]
    assert same["left_out_PT"] == {"excluded": ["last-word"], "unmatched": []}
    assert "| T_train^same(IST) | 1.00 (1) | 1.00 (1) |" in text               # E_rel^PT: has-cat alone
    assert "| T_train^same(IST) | 50.0 (2) | 50.0 (2) |" in text               # E_abs: both with results
    assert "| random | T_train^same(IST) | 1, 2 | no result | first-word |" in text
    assert "| random | T_train^same(IST) | 1, 2 | E_rel^PT: reference ≤ 0 | last-word |" in text
    assert "| random | T_train^diff(IST) | 1, 2 | E_rel^PT: no reference | first-word |" in text
    assert "| T_train^diff(IST) | 1.00 (1) | 1.00 (1) |" in text               # first-word: no PT; last-word: 0


def test_each_draw_of_the_subspace_has_its_own_ist_and_reconstruction(toy, tmp_path):
    p = experiments.plan(toy_args(toy, tmp_path, "--splits", "random,cls", "--msf-draws", "3"))
    folders = [j.folder for j in p.jobs]
    assert len(folders) == len(set(folders))
    for c in p.cells:
        if c.split in ("random", "cls") and ("IST" in c.challenge or "MSF" in c.challenge):
            assert len(c.jobs) == 3
            for i, j in enumerate(c.jobs):                            # draw i: MSF under seed 42 + i, then its users
                seed = str(42 + i) if i else None
                if "msf" == option(j, "--stage"):
                    assert option(j, "--seed") == seed
                    continue
                assert option(j, "--msf-seed") == seed and option(j, "--seed") is None
                msf = next(m for m in p.jobs if option(m, "--stage") == "msf" and option(m, "--seed") == seed
                           and option(m, "--split") == option(j, "--split") and option(m, "--intrinsic-dim") == str(c.dim))
                assert folders.index(msf.folder) < folders.index(j.folder)
    fig5 = [c for c in p.cells if c.split == "random_50"]
    assert fig5 and all(len(c.jobs) == 1 for c in fig5)                # the analyses keep the first draw
    with pytest.raises(SystemExit):
        toy_args(toy, tmp_path, "--msf-draws", "0")


def test_the_spread_of_runs_by_hand():
    runs = [{"a": 0.5, "b": 1.0, "c": 0.2}, {"a": 0.7, "b": 1.0}, {"a": 0.6, "b": 1.0, "c": 0.4}]
    std, mean = results.spread(runs, ["a", "b", "c"])                 # c is missing from one run: left out
    assert mean == pytest.approx({"a": 0.6, "b": 1.0})
    assert std == pytest.approx((math.sqrt(0.02 / 3) + 0.0) / 2)      # a: deviations ±0.1, 0 over 3 runs

def test_a_report_of_nothing_names_every_stage(toy, tmp_path):
    p = experiments.plan(toy_args(toy, tmp_path, "--splits", "random"))
    report.write(p, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert all(j.command() in text for j in p.jobs)


def test_pca_of_known_points():
    z = torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [-1.0, 0, 0], [-2.0, 0, 0]]) + torch.tensor([0, 0, 5.0])
    coords, share = results.pca2(z)
    assert share[0] == pytest.approx(1.0) and torch.allclose(coords[:, 0].abs(), torch.tensor([1.0, 2, 1, 2]))
    assert results.nearest_centroid_accuracy(z, ["a", "a", "b", "b"]) == 1.0
    assert results.nearest_centroid_accuracy(z, ["a", "b", "a", "b"]) == 0.0
    assert math.isnan(results.nearest_centroid_accuracy(z, ["a"] * 4))       # one group: nothing to separate


def test_kinds_apart_only_off_the_two_drawn_components():
    """Kinds 6 apart along one axis, both spread ±10 along two others: z separates them, Fig. 4's two
    principal components (the spread) cannot, and the report says both."""
    corners = torch.tensor([[10.0, 10], [10, -10], [-10, 10], [-10, -10]]).repeat(5, 1)          # (20, 2)
    z = torch.cat([torch.cat([corners, torch.full((20, 1), side)], 1) for side in (3.0, -3.0)])
    tasks = {f"t{i}": data.Task(f"t{i}", "ACC", "cls" if i < 20 else "noncls", "x/y") for i in range(40)}
    got = results.separation(list(tasks), z, tasks)
    assert got["kind"] == 1.0 and got["kind_drawn"] == 0.0


def test_a_split_of_one_kind_reports_no_separation_of_kinds():
    tasks = {n: data.Task(n, "ACC", "cls", f"cls/{c}") for n, c in zip("wxyz", ["p", "p", "q", "q"])}
    z = torch.tensor([[0.0, 1], [0, 1.1], [5, 0], [5.1, 0]])
    got = results.separation(list("wxyz"), z, tasks)
    assert math.isnan(got["kind"]) and got["category_cls"] == 1.0 and math.isnan(got["category_noncls"])


@pytest.mark.slow
@needs(REAL.is_dir(), f"the real CrossFit files at {REAL}")
def test_the_runner_on_real_crossfit_files_with_a_tiny_local_model(tmp_path):
    """The same command as `make paper DATA=… MODEL=…`, on four real tasks and a tiny local T5."""
    from conftest import tiny_t5
    names = ["glue-sst2", "ag_news", "lama-trex", "quarel"]
    texts = [ex.input + " " + " ".join(ex.references) for t in names
             for ex in data.read_examples(data.task_file(REAL, t, "train"))]
    tokenizer = data.train_tokenizer(texts, 400, tmp_path / "model")
    tiny_t5(seed=4, vocab=len(tokenizer), d_model=16).save_pretrained(tmp_path / "model")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "random.txt").write_text("[train]\nglue-sst2\nag_news\nlama-trex\n[test]\nquarel\n")
    (tmp_path / "splits" / "random_50.txt").write_text("[train]\nglue-sst2\n[test]\nquarel\n")
    small = ["--pt-steps", "4", "--ft-steps", "2", "--msf-steps", "4", "--ist-steps", "4", "--eval-every", "2",
             "--train-args", "--max-test 10 --max-input-len 48 --batch-size 2"]
    argv = ["--run", str(tmp_path / "paper"), "--data-dir", str(REAL), "--model", str(tmp_path / "model"),
            "--splits-dir", str(tmp_path / "splits"), "--splits", "random", "--dims", "1,2", "--prompt-len", "4", "--fractions", "50", "--runs", "2", *small]
    summary = experiments.main(argv)
    text = (tmp_path / "paper" / "report.md").read_text()
    assert "Missing runs" not in text and (tmp_path / "paper" / "pca.png").is_file()
    assert "## Fig. 5" in text and "## Table 4" in text                                 # §4.3 runs on real data too
    ist = [r for r in summary["rows"] if (r["cell"].split, r["cell"].challenge) == ("random", "T_test(IST)")]
    assert [r["n"] for r in ist] == [1, 1] and all(0 <= r["E_abs"] <= 1 for r in ist)
    experiments.main(argv)                                   # everything finished: nothing runs again


def test_the_linear_subspace_is_not_planned_beyond_its_training_prompts(toy, tmp_path):
    p = experiments.plan(toy_args(toy, tmp_path, "--splits", "random", "--dims", "2,4", "--did-dims", "none",
                                  "--no-ablations"))
    assert {c.dim for c in p.cells if "(PCA)" in c.challenge} == {2}
    assert p.meta["linear_skipped"] == ["random at d_I = 4 (its 3 training prompts)"]
