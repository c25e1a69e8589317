"""make real's plan (issue: the paper on a real model): every stage also scored by rank classification
(--eval both, known answers against --eval generate and --eval rank), E_rel over the tasks PT learns,
and the whole plan — three splits, the d_I sweep, Table 4 with stage two and SPoT, MPT, PCA, the
similarity map, the LoRA study — end to end on a tiny random Llama over real CrossFit files."""
import pytest

from paper import experiments
import data
import train
from conftest import REAL, needs, tiny_llama
from test_train import args, results


@pytest.mark.slow
def test_eval_both_scores_generation_and_rank_classification_of_the_same_state(world):
    """The untuned PLM (nothing trains, so the three runs score one state): --eval both's test column
    is --eval generate's, its test_rank column --eval rank's (cls tasks ranked, the others generated)."""
    got = {}
    for how in ("generate", "rank", "both"):
        train.main(args(world, f"eval-{how}", "--stage", "untuned", "--eval", how))
        got[how] = results(world / "runs" / f"eval-{how}" / "untuned-s100-default" / "results.tsv")
    for task in got["both"]:
        assert got["both"][task]["test"] == got["generate"][task]["test"]
        assert got["both"][task]["test_rank"] == got["rank"][task]["test"]
    assert "test_rank" not in got["generate"]["has-cat"]


SPLITS = {"random": "[train]\nglue-sst2\nag_news\nlama-trex\nquarel\n[test]\nsms_spam\nsquad-no_context\n",
          "non-cls": "[train]\nlama-trex\nquarel\n[test_in]\nsquad-no_context\n[test_out]\nsms_spam\n",
          "cls": "[train]\nglue-sst2\nag_news\n[test_in]\nsms_spam\n[test_out]\nsquad-no_context\n"}


@pytest.mark.slow
@needs(REAL.is_dir(), f"the real CrossFit files at {REAL}")
def test_the_real_plan_runs_end_to_end_on_a_tiny_llama_over_real_files(tmp_path):
    """`make real`'s own preset (--real), with its model, splits and budgets made tiny."""
    names = sorted({t for text in SPLITS.values() for t in text.split() if not t.startswith("[")})
    texts = [ex.input + " " + " ".join(ex.references) for t in names
             for ex in data.read_examples(data.task_file(REAL, t, "train"))]
    tokenizer = data.train_tokenizer(texts, 400, tmp_path / "llama")
    tiny_llama(seed=6, vocab=len(tokenizer)).save_pretrained(tmp_path / "llama")
    (tmp_path / "splits").mkdir()
    for name, text in SPLITS.items():
        (tmp_path / "splits" / f"{name}.txt").write_text(text)
    argv = ["--real", "--run", str(tmp_path / "real"), "--model", str(tmp_path / "llama"), "--splits-dir",
            str(tmp_path / "splits"), "--dims", "1,2", "--prompt-len", "4", "--runs", "2", "--pt-steps", "4",
            "--msf-steps", "4", "--ist-steps", "4", "--eval-every", "2", "--random-draws", "1",
            "--train-args", "--max-test 8 --max-input-len 48 --batch-size 2 --eval-batch-size 16"]
    summary = experiments.main(argv)
    text = (tmp_path / "real" / "report.md").read_text()
    assert "Missing runs" not in text
    for heading in ("## By rank classification", "## Table 4", "## Fig. 4", "## Task similarity",
                    "## Beyond the paper: the intrinsic task subspace of LoRA"):
        assert heading in text, heading
    cells = {(r["cell"].split, r["cell"].challenge, r["cell"].dim) for r in summary["rows"]}
    for split, held in (("random", "T_test"), ("non-cls", "T_test^in"), ("cls", "T_test^out")):
        for method in ("IST", "MSF", "random", "PCA", "MPT"):
            assert {(split, f"{held}({method})", d) for d in (1, 2)} <= cells, (split, held, method)
    lora_cells = {c for c in cells if c[0].startswith("LoRA")}        # the LoRA study on every split
    assert {("LoRA random", "T_test(LoRA-IST)", d) for d in (1, 2)} <= lora_cells
    assert ("LoRA non-cls", "T_test^in(LoRA-mean)", 1) in lora_cells
    assert set(summary["stability"]) == {"PT", "IST (d_I = 2)", "stage two: PT from IST",
                                         "SPoT: PT from the mean prompt", "SPoT: PT from the nearest task's prompt"}
    assert all(row and row["runs"] == 2 and row["tasks"] == 2 for row in summary["stability"].values())
    pt = results(next((tmp_path / "real").glob("pt-s100-all")) / "results.tsv")
    assert set(pt) == set(names) and all("test_rank" in row for row in pt.values())
    assert "E_rel^PT over the tasks PT learns" in text or "PT beats the untuned PLM on every one" in text
