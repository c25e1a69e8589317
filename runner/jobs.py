"""
The pieces of a plan (paper/experiments.py): a Job is one train.py stage (its arguments, its folder, the tasks
it trains), a Cell one number of a figure or table (which jobs' scores, over which tasks), a Plan the
jobs in the order they run and the cells the report draws from them.
"""
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import evaluate
import train


@dataclass
class Job:
    """One train.py stage: its arguments, the folder it writes and the tasks it trains (those with
    data). Fine-tuning and DID write one results.tsv per task (<folder>/<task>/), the others one."""
    argv: list
    folder: Path
    tasks: list

    def command(self):
        return "python train.py " + shlex.join(self.argv)

    def results(self, column="test"):
        """{task: test score} of the planned tasks that have finished (column: results.tsv's)."""
        files = [self.folder / "results.tsv", *(self.folder / t / "results.tsv" for t in self.tasks)]
        scores = {}
        for f in files:
            if f.is_file():
                scores.update(evaluate.read_results(f, column))
        return {t: scores[t] for t in self.tasks if t in scores}

    def done(self):
        """Every planned task has its results: a stage interrupted part-way is not done."""
        return len(self.results()) == len(self.tasks)

    def progress(self):
        """'' when done or not started, else 'partial: n of N tasks have results'."""
        n = len(self.results())
        return f"partial: {n} of {len(self.tasks)} tasks have results" if 0 < n < len(self.tasks) else ""


@dataclass
class Cell:
    """One number of a figure or table: the mean over `tasks` of the test scores of `jobs` (each
    task's score averaged over the jobs: draws of the random or the MSF subspace), E_rel^PT
    against `ref` (Fig. 6's 2K-shot cells: the PT of their own shot count; else the plan's PT)."""
    split: str
    challenge: str                                    # "T_train(MSF)", "T_test^in(IST)", …
    dim: int
    jobs: list
    tasks: list
    ref: Job = None


@dataclass
class Plan:
    jobs: list = field(default_factory=list)          # in the order they must run
    cells: list = field(default_factory=list)
    pt: Job = None
    ft: Job = None
    untuned: Job = None
    stability: dict = field(default_factory=dict)     # Table 4: method -> one job per seed
    meta: dict = field(default_factory=dict)          # what the report says about the setting

    def add(self, job):
        if all(j.folder != job.folder for j in self.jobs):
            self.jobs.append(job)
        return job


def heldout_label(section, method):
    """test -> T_test(IST); test_in -> T_test^in(IST)."""
    return f"T_test{'^' + section[5:] if section.startswith('test_') else ''}({method})"


def seeded(i, flag="--seed"):
    """The i-th run's seed as train.py options (none for the default 42): its initialisation, or
    with --msf-seed the draw of the MSF subspace that IST and reconstruct use."""
    return [flag, train.stages.DEFAULT_SEED + i] if i else []
