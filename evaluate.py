"""
Scoring: CrossFit's seven metrics, and the paper's E_abs / E_rel (§4.1, "Evaluation Metrics").

The metrics reproduce CrossFit's dataloader/metrics.py (identical in the IPT repository) without
sklearn, scipy or rouge: predictions are stripped, a task score is the mean over examples
(corpus-level for the F1 and correlation metrics), and with several references the best counts.

    python evaluate.py compare runs/x/ist/results.tsv runs/x/pt/results.tsv   # E_abs, E_rel
"""
import argparse
import math
import re
import string
from collections import Counter
from pathlib import Path

import cli
from cli import UserError

PUNCTUATION = set(string.punctuation)


def normalize_answer(s):
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in s.lower() if ch not in PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred, ref):
    return float(normalize_answer(pred) == normalize_answer(ref))


def accuracy(pred, ref):
    return float(pred.lower() == ref.lower())               # lower case only, as CrossFit


def qa_f1(pred, ref):
    """SQuAD token F1 over normalised tokens."""
    p, r = normalize_answer(pred).split(), normalize_answer(ref).split()
    same = sum((Counter(p) & Counter(r)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


def _lcs_words(x, y):
    """The words of one longest common subsequence of x and y, chosen by the `rouge` 1.0.0
    backtrack (diagonal on a match, else up when strictly longer, else left)."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            table[i][j] = (table[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1]
                           else max(table[i - 1][j], table[i][j - 1]))
    words, i, j = [], len(x), len(y)
    while i and j:
        if x[i - 1] == y[j - 1]:
            words.append(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l(pred, ref):
    """Rouge-L F as `rouge` 1.0.0 computes it: summary-level LCS over sentences split at '.',
    and (its `exclusive` mode) word *sets*: m and n count distinct words, the overlap counts
    distinct words in the union of the per-sentence LCSs."""
    if not any(ch not in PUNCTUATION for ch in pred):      # CrossFit: nothing but punctuation -> 0
        return 0.0
    sentences = lambda text: [" ".join(s.split()) for s in text.split(".") if len(s) > 0]
    hyp, refs = sentences(pred), sentences(ref)
    if not hyp or not refs:                                 # `rouge` raises here; 0 is the useful answer
        return 0.0
    words = lambda sents: {w for s in sents for w in s.split(" ")}
    m, n = len(words(refs)), len(words(hyp))
    union = set()
    for r in refs:
        for h in hyp:
            union.update(_lcs_words(r.split(" "), h.split(" ")))
    recall, precision = len(union) / m, len(union) / n
    return 2.0 * (precision * recall) / (precision + recall + 1e-8)


def macro_f1(golds, preds):
    """sklearn's f1_score(average='macro'): the labels are the union of gold and predicted
    strings, so every distinct wrong prediction is a class of F1 0."""
    f1s = []
    for label in sorted(set(golds) | set(preds)):
        tp = sum(g == label and p == label for g, p in zip(golds, preds))
        fp = sum(g != label and p == label for g, p in zip(golds, preds))
        fn = sum(g == label and p != label for g, p in zip(golds, preds))
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s)


def matthews(golds, preds):
    """Binary MCC (sklearn returns 0 when a margin is empty)."""
    tp = sum(g and p for g, p in zip(golds, preds))
    tn = sum(not g and not p for g, p in zip(golds, preds))
    fp = sum(not g and p for g, p in zip(golds, preds))
    fn = sum(g and not p for g, p in zip(golds, preds))
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def pearson(xs, ys):
    """scipy.stats.pearsonr's r; NaN if any value is NaN or either side is constant."""
    if any(math.isnan(v) for v in xs + ys):
        return math.nan
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else math.nan


def _float_or_nan(s):
    try:
        return float(s)
    except ValueError:
        return math.nan


PER_EXAMPLE = {"EM": exact_match, "ACC": accuracy, "QA-F1": qa_f1, "Rouge-L": rouge_l}
METRICS = (*PER_EXAMPLE, "Classification-F1", "Matthew-Correlation", "Pearson-Correlation")


def score(metric, predictions, references):
    """A task's score. predictions: list of str; references: list of lists of str (one list per
    example, best reference counts; the corpus-level metrics use the first, as CrossFit)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} examples")
    if not predictions:
        raise ValueError("no examples to score")
    predictions = [p.strip() for p in predictions]
    if metric in PER_EXAMPLE:
        fn = PER_EXAMPLE[metric]
        return sum(max(fn(p, r) for r in refs) for p, refs in zip(predictions, references)) / len(predictions)
    firsts = [refs[0] for refs in references]
    if metric == "Classification-F1":
        return macro_f1(firsts, predictions)
    if metric == "Matthew-Correlation":                    # glue-cola: 1 iff "acceptable"
        return matthews([g == "acceptable" for g in firsts], [p == "acceptable" for p in predictions])
    if metric == "Pearson-Correlation":
        return pearson([_float_or_nan(p) for p in predictions], [float(g) for g in firsts])
    raise ValueError(f"unknown metric {metric!r}; CrossFit's are {', '.join(METRICS)}")


# -----------------------------------------------------------------------------
# §4.1: E_abs = mean_i E_Ti, E_rel = mean_i E_Ti / E*_Ti (E* = the PT or fine-tuning score)

def summarise(scores, reference=None):
    """scores, reference: {task: score}. Returns E_abs over `scores` and, given a reference,
    E_rel over the tasks in both. Rule for denominators: a task whose reference score is ≤ 0
    (glue-cola's MCC can be) has no meaningful "fraction recovered", so it is left out of E_rel
    and listed under 'excluded'; tasks missing from the reference are listed under 'unmatched'."""
    if not scores:
        raise ValueError("no task scores to summarise")
    out = {"tasks": len(scores), "E_abs": sum(scores.values()) / len(scores)}
    if reference is not None:
        both = [t for t in scores if t in reference]
        usable = [t for t in both if reference[t] > 0]
        out["E_rel"] = sum(scores[t] / reference[t] for t in usable) / len(usable) if usable else math.nan
        out["E_rel_tasks"] = len(usable)
        out["excluded"] = sorted(t for t in both if reference[t] <= 0)
        out["unmatched"] = sorted(t for t in scores if t not in reference)
    return out


def read_results(path, column="test"):
    """A results.tsv written by train.py, or a stage folder (fine-tuning keeps one per task in
    sub-folders) -> {task: test score} (column test_rank: --eval both's rank classification). A
    malformed file is named with its line."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("results.tsv")) or sorted(path.glob("*/results.tsv"))
    rerun = "re-run the stage that writes it (delete its folder first if it says it is finished)"
    if not files:
        raise UserError(f"no results.tsv at {path}: {rerun}")
    scores = {}
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{f} cannot be read ({getattr(e, 'strerror', None) or 'not UTF-8'}): {rerun}") from None
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")]
        if len(lines) < 2:
            raise UserError(f"{f} holds no task's score: the run that writes it did not finish; {rerun}")
        header = lines[0][1].split("\t")
        for needed in ("task", column):
            if needed not in header:
                raise UserError(f"{f}:{lines[0][0]}: no column {needed!r} in the header ({', '.join(header)}): {rerun}")
        for number, line in lines[1:]:
            row = dict(zip(header, line.split("\t")))
            try:
                scores[row["task"]] = float(row[column])
            except (KeyError, ValueError):
                raise UserError(f"{f}:{number}: expected a number in column {column!r}, got {line[:80]!r}: "
                                f"{rerun}") from None
    return scores


def markdown_table(scores, reference=None):
    """One row per task (score ×100, reference, ratio), then E_abs and E_rel."""
    lines = ["| task | score | reference | ratio |", "|---|---:|---:|---:|"]
    for task in sorted(scores):
        ref = reference.get(task) if reference else None
        ratio = f"{scores[task] / ref:.2f}" if ref and ref > 0 else "–"
        lines.append(f"| {task} | {100 * scores[task]:.1f} | {'–' if ref is None else f'{100 * ref:.1f}'} | {ratio} |")
    s = summarise(scores, reference)
    lines.append(f"\nE_abs = {100 * s['E_abs']:.1f} over {s['tasks']} tasks")
    if reference is not None:
        lines.append(f"E_rel = {s['E_rel']:.3f} over {s['E_rel_tasks']} tasks"
                     + (f"; left out (reference ≤ 0): {', '.join(s['excluded'])}" if s["excluded"] else "")
                     + (f"; no reference: {', '.join(s['unmatched'])}" if s["unmatched"] else ""))
    return "\n".join(lines)


@cli.command()
def main(argv=None):
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="E_abs of a results.tsv, and E_rel against a reference results.tsv")
    c.add_argument("results", help="results.tsv (or stage folder) of the method, e.g. IST")
    c.add_argument("reference", nargs="?", help="results.tsv (or stage folder) of PT or fine-tuning")
    args = p.parse_args(argv)
    print(markdown_table(read_results(args.results), read_results(args.reference) if args.reference else None))


if __name__ == "__main__":
    main()
