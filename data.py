"""
Data: the task table, the splits, CrossFit's few-shot files, tokenisation and the multi-task batcher.

CrossFit layout: DATA_DIR/<task>/<task>_<k>_<seed>_<split>.tsv, seeds 100, 13, 21, 42, 87, splits
train / dev / test; a line is `input<TAB>ref1[<TAB>ref2 …]` in UTF-8 (the test file is the same for
every seed). The paper's K-shot sets are k = 16 (per class, or 32 examples for non-cls tasks).

    python data.py check --data-dir ../shared/data/crossfit --split random
"""
import argparse
import difflib
import hashlib
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

import cli
from cli import UserError  # noqa: F401  (the project's one kind of user's mistake, re-exported)
from evaluate import METRICS
from ipt import IGNORE

HERE = Path(__file__).parent
SEEDS = (100, 13, 21, 42, 87)            # CrossFit's; the authors train PT and MSF on seed 100
SPLIT_FILES = ("train", "dev", "test")


@dataclass(frozen=True)
class Task:
    name: str
    metric: str                          # one of evaluate.METRICS
    type: str                            # cls | noncls | neither
    ontology: str = ""
    shots: str = ""
    random_split: str = ""


@dataclass(frozen=True)
class Example:
    input: str
    references: tuple                    # one or more acceptable outputs


class DataError(UserError):
    """Bad or missing input data; the message says which file and what to do."""


# -----------------------------------------------------------------------------
# Task table and splits (plain text files: tasks.txt, splits/<name>.txt)

def load_tasks(path=HERE / "tasks.txt"):
    """tasks.txt -> {name: Task}. '#' lines are comments, the first other line the header, which
    must start with task, metric, type; a row may leave off trailing optional columns."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no task table at {path}: restore it, or give --tasks-file a file like tasks.txt")
    lines = [(n, line) for n, line in enumerate(text_of(path, "restore the task table (tasks.txt)").splitlines(), 1)
             if line.strip() and not line.startswith("#")]
    if not lines or lines[0][1].split("\t")[:3] != ["task", "metric", "type"]:
        raise DataError(f"{path}: the first line must be the header 'task<TAB>metric<TAB>type[<TAB>…]': restore the "
                        "task table, or write that header")
    header, tasks = lines[0][1].split("\t"), TaskTable(path)
    for number, line in lines[1:]:
        row = line.split("\t")
        where = f"{path}:{number}"
        if not 3 <= len(row) <= len(header):
            raise DataError(f"{where}: expected 3 to {len(header)} TAB-separated columns ({', '.join(header)}), "
                            f"got {len(row)}: {line[:80]!r}")
        task = Task(row[0], **dict(zip(header[1:], row[1:])))
        if task.metric not in METRICS:
            raise DataError(f"{where}: unknown metric {task.metric!r} for {task.name}; CrossFit's are {', '.join(METRICS)}")
        if task.type not in ("cls", "noncls", "neither"):
            raise DataError(f"{where}: type of {task.name} is {task.type!r}; expected cls, noncls or neither")
        if task.name in tasks:
            raise DataError(f"{where}: task {task.name} is listed twice")
        tasks[task.name] = task
    return tasks


class TaskTable(dict):
    """{name: Task}, remembering the file it was read from (for the errors that name it)."""

    def __init__(self, path):
        super().__init__()
        self.path = path


def text_of(path, fix):
    """A small text file's contents; one that is not UTF-8 or cannot be read is named with `fix`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.object[e.start]:#04x} at {e.start}): {fix}") from None
    except OSError as e:
        raise DataError(f"{path} cannot be read ({e.strerror}): {fix}") from None


def unknown_task(name, known):
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return DataError(f"unknown task {name!r}.{hint} Known tasks are listed in {getattr(known, 'path', 'tasks.txt')} "
                     "(restore it, or give --tasks-file the table that lists it).")


def write_split(path, sections):
    """The inverse of load_split: {section: [task, …]} -> a split file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"[{s}]\n" + "".join(t + "\n" for t in ts) for s, ts in sections.items()))


def load_split(name_or_path, tasks):
    """A split file: '[section]' headers (train, test, test_in, test_out, …), one task per line.
    `name_or_path` is a file, or the name of one in splits/. -> {section: [task, …]}"""
    path = Path(name_or_path)
    if not path.is_file():
        path = HERE / "splits" / f"{name_or_path}.txt"
    if not path.is_file():
        names = sorted(p.stem for p in (HERE / "splits").glob("*.txt"))
        raise DataError(f"no split {name_or_path!r}: give a split file or one of {', '.join(names)}")
    sections, current = {}, None
    for number, line in enumerate(text_of(path, "restore the split file").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif current is None:
            raise DataError(f"{path}:{number}: task {line!r} before any [section] header")
        elif line not in tasks:
            raise DataError(f"{path}:{number}: {unknown_task(line, tasks)}")
        else:
            current.append(line)
    if not any(sections.values()):
        raise DataError(f"{path} lists no task under a [section] header: restore the split file, or give another")
    return sections


# -----------------------------------------------------------------------------
# CrossFit files

def task_file(data_dir, task, split, k=16, seed=100):
    return Path(data_dir) / task / f"{task}_{k}_{seed}_{split}.tsv"


def read_examples(path, raw=None):
    """One Example per line; a missing, empty or malformed file raises DataError naming file:line.
    raw: the file's bytes when already read."""
    path = Path(path)
    if raw is None and not path.is_file():
        raise DataError(f"missing data file {path}: copy or build the task's files again")
    examples = []
    for number, raw in enumerate((path.read_bytes() if raw is None else raw).splitlines(keepends=True), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{number}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}): "
                            f"re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
        fields = line.rstrip("\n").rstrip("\r").split("\t")
        if len(fields) < 2 or not fields[0].strip() or not any(r.strip() for r in fields[1:]):
            raise DataError(f"{path}:{number}: expected 'input<TAB>reference[<TAB>reference…]', "
                            f"got {line[:80]!r}: copy or build the task's files again")
        examples.append(Example(fields[0], tuple(r for r in fields[1:] if r.strip())))
    if not examples:
        raise DataError(f"{path} is empty: regenerate it or leave the task out of the split")
    return examples


def load_task_data(data_dir, task, k=16, seed=100):
    """{'train': [Example], 'dev': [...], 'test': [...]} for one task and seed."""
    return {split: read_examples(task_file(data_dir, task, split, k, seed)) for split in SPLIT_FILES}


def require_data_dir(data_dir, k=16):
    if not Path(data_dir).is_dir():
        raise DataError(f"--data-dir {data_dir} is not a folder: give the folder holding "
                        f"<task>/<task>_{k}_<seed>_<split>.tsv (CrossFit's layout)")


def missing_tasks(data_dir, names, k=16, seed=100):
    """Tasks whose folder or any of the three files for this seed is absent."""
    return [t for t in names if not all(task_file(data_dir, t, s, k, seed).is_file() for s in SPLIT_FILES)]


def fingerprint(data_dir, task, k=16, seed=100):
    """SHA-256 of a task's train, dev and test files for this seed: a resumed run checks that its
    data did not change under it. Each file is parsed from the same bytes, so a damaged one is
    named (DataError, file:line) here, before any model loads."""
    h = hashlib.sha256()
    for split in SPLIT_FILES:
        path = task_file(data_dir, task, split, k, seed)
        raw = path.read_bytes()
        read_examples(path, raw)
        h.update(raw)
        h.update(b"\0")
    return h.hexdigest()[:16]


def check(data_dir, split, tasks, k=16, seed=100, out=sys.stdout):
    """Print one line per task of the split and a summary; return the number of problems."""
    require_data_dir(data_dir, k)
    sections = load_split(split, tasks)
    names = list(dict.fromkeys(t for section in sections.values() for t in section))
    missing = missing_tasks(data_dir, names, k, seed)
    malformed = 0
    print(f"{'task':42} {'status':9} {'train':>5} {'dev':>5} {'test':>6}  labels  seeds", file=out)
    for name in names:
        seeds = sum(not missing_tasks(data_dir, [name], k, s) for s in SEEDS)
        blank = f"{'':>5} {'':>5} {'':>6}  {'':6}  {seeds}/5"
        if name in missing:
            print(f"{name:42} {'missing':9} {blank}", file=out)
            continue
        try:
            data = load_task_data(data_dir, name, k, seed)
        except DataError as e:
            malformed += 1
            print(f"{name:42} {'malformed':9} {blank}  {e}", file=out)
            continue
        labels = len({ex.references[0] for ex in data["train"]}) if tasks[name].type == "cls" else ""
        print(f"{name:42} {'ok':9} {len(data['train']):>5} {len(data['dev']):>5} {len(data['test']):>6}"
              f"  {labels!s:6}  {seeds}/5", file=out)
    problems = len(missing) + malformed
    print(f"\n{len(names) - problems} of {len(names)} tasks of split {split!r} present in {data_dir}"
          f" (k={k}, seed {seed}).", file=out)
    if missing:
        print(f"missing ({len(missing)}): {', '.join(missing)}", file=out)
    return problems


# -----------------------------------------------------------------------------
# Tokenisation, batches, and the multi-task batcher

def format_input(task, text, task_tag):
    """The authors prepend ' [task] ' to every input; off by default, since it leaks task identity."""
    return f" [{task}] {text}" if task_tag else text


# A decoder-only PLM reads [x; y] as one text, so x ends with a visible boundary and y starts with
# a space, as a word inside BPE text does (T5 reads x and y apart and needs neither).
CAUSAL_ANSWER, CAUSAL_TARGET = "\nAnswer:", " {}"


def tokenize(tokenizer, texts, max_len, end=None):
    """Token ids cut to max_len, with `end` (default [</s>]) kept as the last ids even when the text
    is cut (the authors' cut lost the </s>)."""
    end = [tokenizer.eos_token_id] if end is None else list(end)
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [row[:max_len - len(end)] + end for row in ids]


def prepare(cfg, names, tasks, tokenizer, causal=False):
    """Tokenised rows of every task: train (one row per reference), dev and test (input, references).
    cfg: train.Config (its data options). causal: the decoder-only formatting above."""
    end = tokenizer(CAUSAL_ANSWER, add_special_tokens=False)["input_ids"] if causal else None
    if end and cfg.max_input_len <= len(end):
        raise UserError(f"--max-input-len {cfg.max_input_len} leaves no room for the input: a decoder-only "
                        f"model's inputs end with {CAUSAL_ANSWER!r}, {len(end)} tokens of this tokenizer; "
                        f"give at least {len(end) + 1}")
    target = CAUSAL_TARGET if causal else "{}"
    prepared = []
    for name in names:
        split = load_task_data(cfg.data_dir, name, cfg.k, cfg.data_seed)
        if cfg.max_test:
            split["test"] = split["test"][:cfg.max_test]
        enc = lambda exs: tokenize(tokenizer, [format_input(name, e.input, cfg.task_tag) for e in exs],
                                   cfg.max_input_len, end)
        train_in, pairs = enc(split["train"]), [(i, r) for i, e in enumerate(split["train"]) for r in e.references]
        targets = tokenize(tokenizer, [target.format(r) for _, r in pairs], cfg.max_target_len)
        classes = list(dict.fromkeys(r for e in split["train"] + split["dev"] for r in e.references))
        prepared.append({"name": name, "metric": tasks[name].metric,
                         # a cls task's label set, for rank classification (--eval rank)
                         "options": tokenize(tokenizer, [target.format(c) for c in classes], cfg.max_target_len)
                         if tasks[name].type == "cls" else [],
                         "train": [(train_in[i], t) for (i, _), t in zip(pairs, targets)],
                         "dev": list(zip(enc(split["dev"]), [e.references for e in split["dev"]])),
                         "test": list(zip(enc(split["test"]), [e.references for e in split["test"]]))})
    return prepared


@dataclass
class Batch:
    input_ids: torch.Tensor              # (B, T)
    attention_mask: torch.Tensor         # (B, T)
    labels: torch.Tensor                 # (B, L), IGNORE at padding
    task_idx: torch.Tensor               # (B,) index of each row's task in the run

    def to(self, device):
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels, self.task_idx)))

    def rows(self, index):
        return Batch(*(t[index] for t in (self.input_ids, self.attention_mask, self.labels, self.task_idx)))


def collate(rows, pad_id):
    """rows: [(task_idx, input ids, target ids)] -> Batch, padded to the longest row (dynamic padding)."""
    T = max(len(r[1]) for r in rows)
    L = max(len(r[2]) for r in rows)
    input_ids = torch.full((len(rows), T), pad_id)
    labels = torch.full((len(rows), L), IGNORE)
    for b, (_, src, tgt) in enumerate(rows):
        input_ids[b, :len(src)] = torch.tensor(src)
        labels[b, :len(tgt)] = torch.tensor(tgt)
    mask = (torch.arange(T)[None] < torch.tensor([len(r[1]) for r in rows])[:, None]).long()
    return Batch(input_ids, mask, labels, torch.tensor([r[0] for r in rows]))


def task_generator(seed, name, offset=0):
    """A task's own random stream: what it draws does not depend on the other tasks of a run."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()) + offset)


class TaskBatcher:
    """Training rows of many tasks; step s takes `rows_per_task` rows from every active task.

    Balancing: each task contributes the same number of rows per step whatever its size (the
    authors' MSF sampled by example, so many-label tasks weighed more). A task's row order is an
    endless chain of permutations seeded by (seed, task name, epoch) alone, so what a task sees at
    step s does not depend on which other tasks share the run, and a resumed run sees the same."""

    def __init__(self, train_rows, rows_per_task, seed):
        self.rows = train_rows                               # [[(input ids, target ids)], …] per task
        self.rows_per_task, self.seed = rows_per_task, seed

    def order(self, task, epoch, name):
        return torch.randperm(len(self.rows[task]), generator=task_generator(self.seed, name, epoch)).tolist()

    def task_rows(self, task, step, name):
        n, b = len(self.rows[task]), self.rows_per_task
        orders, picks = {}, []
        for position in range(step * b, (step + 1) * b):     # position in the endless stream
            epoch, offset = divmod(position, n)
            if epoch not in orders:
                orders[epoch] = self.order(task, epoch, name)
            picks.append(self.rows[task][orders[epoch][offset]])
        return picks

    def batch(self, step, active, names, pad_id):
        """active: task indices still training; names: their names (the stream's seed)."""
        return collate([(k, src, tgt) for k in active for src, tgt in self.task_rows(k, step, names[k])], pad_id)


def train_tokenizer(texts, vocab_size, out_dir, whole_words=()):
    """A SentencePiece unigram model trained on `texts`, wrapped as a T5 tokenizer and saved to
    out_dir (loadable with T5Tokenizer.from_pretrained). T5's ids: pad 0, </s> 1, <unk> 2.
    `whole_words` are kept as single pieces (SentencePiece's user-defined symbols)."""
    import io

    import sentencepiece as spm
    from transformers import T5Tokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
                                   pad_id=0, eos_id=1, unk_id=2, bos_id=-1, model_type="unigram",
                                   hard_vocab_limit=False, minloglevel=2, user_defined_symbols=list(whole_words))
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    tokenizer = T5Tokenizer(vocab=[(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())],
                            extra_ids=0)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


@cli.command()
def main(argv=None):
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="report which tasks of a split are present, with counts; exit 1 if any is not")
    c.add_argument("--data-dir", required=True, help="folder in CrossFit's layout")
    c.add_argument("--split", default="random", help="a name in splits/ or a split file (default: random)")
    c.add_argument("--tasks-file", default=str(HERE / "tasks.txt"), help="task table (default: tasks.txt)")
    c.add_argument("--k", type=int, default=16, help="the k in <task>_<k>_<seed>_<split>.tsv (default 16)")
    c.add_argument("--seed", type=int, default=100, help="which seed's files to count (default 100)")
    args = p.parse_args(argv)
    cli.at_least(p, args, {"--k": 1, "--seed": 0})
    tasks = load_tasks(args.tasks_file)
    require_data_dir(args.data_dir, args.k)
    cli.checked()
    problems = check(args.data_dir, args.split, tasks, args.k, args.seed)
    if problems:
        raise DataError(f"{problems} task(s) of split {args.split!r} are missing or malformed in {args.data_dir} (above)")


if __name__ == "__main__":
    main()
