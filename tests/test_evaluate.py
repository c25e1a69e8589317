"""Known answers for CrossFit's metrics (hand-worked, and values printed by sklearn 1.x, scipy and
`rouge` 1.0.0 where noted), properties of each, and the E_abs / E_rel rule."""
import math

import pytest
from hypothesis import given, strategies as st

import evaluate as ev


def test_exact_match_normalises_like_squad():
    assert ev.score("EM", ["The  Eiffel tower!"], [["eiffel Tower"]]) == 1.0
    assert ev.score("EM", ["an apple", "pear"], [["apple"], ["apple", "pears", "pear"]]) == 1.0
    assert ev.score("EM", ["apples"], [["apple"]]) == 0.0


def test_accuracy_only_lowercases():
    assert ev.score("ACC", [" Positive "], [["positive"]]) == 1.0       # prediction stripped
    assert ev.score("ACC", ["positive."], [["positive"]]) == 0.0        # punctuation counts
    assert ev.score("ACC", ["a", "b", "c", "d"], [["a"], ["x", "b"], ["c"], ["e"]]) == 0.75


def test_qa_f1_by_hand():
    # pred tokens: cat sat mat (the removed); ref: cat on mat -> 2 shared, p = r = 2/3
    assert ev.score("QA-F1", ["the cat sat mat"], [["cat on the mat"]]) == pytest.approx(2 / 3)
    assert ev.score("QA-F1", ["dog"], [["cat"], ]) == 0.0
    assert ev.score("QA-F1", ["cat cat"], [["cat"]]) == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_rouge_l_by_hand():
    # word sets of 5 each; LCS "the cat on the mat" has 4 distinct words -> p = r = 0.8
    assert ev.rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(0.8, abs=1e-7)
    # LCS length 2 of 4 distinct words each
    assert ev.rouge_l("police killed the gunman", "the gunman police killed") == pytest.approx(0.5, abs=1e-7)


@pytest.mark.parametrize("pred, ref, expected", [            # printed by rouge 1.0.0's Rouge().get_scores
    ("a b c. d e", "a c e. b d", 0.999999995),                # union of per-sentence LCSs covers all
    ("the the the cat", "the cat cat", 0.999999995),          # word sets, not counts
    ("hello", "world", 0.0),
    ("cat sat. mat", "cat. sat mat", 0.999999995),
    ("the cat sat on the mat", "the cat is on the mat", 0.7999999950000002),
])
def test_rouge_l_matches_the_rouge_package(pred, ref, expected):
    assert ev.rouge_l(pred, ref) == pytest.approx(expected, abs=1e-15)


def test_rouge_l_of_punctuation_only_is_zero_and_multi_reference_takes_the_best():
    assert ev.score("Rouge-L", ["..."], [["a b"]]) == 0.0
    assert ev.score("Rouge-L", ["a b"], [["x y", "a b"]]) == pytest.approx(1.0, abs=1e-7)


def test_macro_f1_over_the_union_of_labels():
    # labels a, b, c and the stray prediction x: F1 = 2/3, 1/2, 1, 0 (sklearn prints 0.5416666666666666)
    golds = [["a"], ["a"], ["b"], ["b", "ignored"], ["c"]]
    assert ev.score("Classification-F1", ["a", "b", "b", "x", "c"], golds) == pytest.approx(0.5416666666666666)


def test_matthews_for_cola():
    golds = [["acceptable"], ["acceptable"], ["unacceptable"], ["unacceptable"], ["acceptable"], ["unacceptable"]]
    preds = ["acceptable", "unacceptable", "unacceptable", "unacceptable", "acceptable", "acceptable"]
    assert ev.score("Matthew-Correlation", preds, golds) == pytest.approx(1 / 3)  # (4-1)/9
    assert ev.score("Matthew-Correlation", ["acceptable"] * 2, [["acceptable"], ["unacceptable"]]) == 0.0


def test_pearson():
    assert ev.score("Pearson-Correlation", ["1", "2", "3"], [["2"], ["4"], ["6"]]) == pytest.approx(1.0)
    assert math.isnan(ev.score("Pearson-Correlation", ["1", "two", "3"], [["2"], ["4"], ["6"]]))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown metric"):
        ev.score("BLEU", ["a"], [["a"]])
    with pytest.raises(ValueError, match="2 predictions for 1"):
        ev.score("EM", ["a", "b"], [["a"]])


texts = st.text(alphabet="abc .,", min_size=0, max_size=12)
labels = st.sampled_from(["pos", "neg", "neu", "junk"])


@given(st.lists(st.tuples(texts, st.lists(texts, min_size=1, max_size=3)), min_size=1, max_size=8),
       st.sampled_from(["EM", "ACC", "QA-F1", "Rouge-L"]))
def test_per_example_metrics_are_fractions(rows, metric):
    preds, refs = zip(*rows)
    assert 0.0 <= ev.score(metric, list(preds), list(refs)) <= 1.0


@given(st.lists(texts.map(str.strip).filter(ev.normalize_answer), min_size=1, max_size=8),
       st.sampled_from(["EM", "ACC", "QA-F1", "Rouge-L", "Classification-F1"]))
def test_identical_predictions_score_one(golds, metric):
    """Golds are stripped (CrossFit strips predictions only) and keep a word after SQuAD
    normalisation (QA-F1 of "a" against "a" is 0 in CrossFit: both normalise to nothing)."""
    assert ev.score(metric, golds, [[g] for g in golds]) == pytest.approx(1.0, abs=1e-7)


@given(st.lists(st.tuples(labels, labels), min_size=1, max_size=12), st.randoms())
def test_corpus_metrics_ignore_example_order(pairs, rnd):
    shuffled = pairs[:]
    rnd.shuffle(shuffled)
    for metric in ("Classification-F1", "ACC"):
        a = ev.score(metric, [p for p, _ in pairs], [[g] for _, g in pairs])
        b = ev.score(metric, [p for p, _ in shuffled], [[g] for _, g in shuffled])
        assert a == pytest.approx(b)
    assert 0.0 <= ev.macro_f1([g for _, g in pairs], [p for p, _ in pairs]) <= 1.0


def test_e_abs_and_e_rel_with_the_denominator_rule():
    ist = {"a": 0.4, "b": 0.9, "cola": 0.1, "new": 0.5}
    pt = {"a": 0.8, "b": 0.9, "cola": -0.05}
    s = ev.summarise(ist, pt)
    assert s["E_abs"] == pytest.approx((0.4 + 0.9 + 0.1 + 0.5) / 4)
    assert s["E_rel"] == pytest.approx((0.5 + 1.0) / 2)                 # cola (PT ≤ 0) left out
    assert s["excluded"] == ["cola"] and s["unmatched"] == ["new"] and s["E_rel_tasks"] == 2
    table = ev.markdown_table(ist, pt)
    assert "E_rel = 0.750 over 2 tasks" in table and "left out (reference ≤ 0): cola" in table


def test_compare_reads_results_files(tmp_path, capsys):
    (tmp_path / "ist.tsv").write_text("task\tmetric\tdev\ttest\tsteps\na\tACC\t0.5\t0.4\t10\nb\tEM\t1\t0.9\t10\n")
    (tmp_path / "pt.tsv").write_text("task\tmetric\tdev\ttest\tsteps\na\tACC\t0.9\t0.8\t10\nb\tEM\t1\t0.9\t10\n")
    ev.main(["compare", str(tmp_path / "ist.tsv"), str(tmp_path / "pt.tsv")])
    out = capsys.readouterr().out
    assert "E_abs = 65.0 over 2 tasks" in out and "E_rel = 0.750 over 2 tasks" in out


def test_results_of_a_fine_tuning_folder_are_gathered(tmp_path):
    for task, score in (("a", "0.5"), ("b", "0.7")):
        (tmp_path / "ft" / task).mkdir(parents=True)
        (tmp_path / "ft" / task / "results.tsv").write_text(f"task\tmetric\tdev\ttest\tsteps\n{task}\tEM\t1\t{score}\t9\n")
    assert ev.read_results(tmp_path / "ft") == {"a": 0.5, "b": 0.7}
    with pytest.raises(ValueError, match="no results.tsv"):
        ev.read_results(tmp_path / "nothing")
