"""
What a plan of many stages is made of, shared by the paper's runner and the studies beyond it: a Job
is one train.py stage, a Cell one number of the report (jobs.py); the stages' results read back
(results.py); and the figures drawn from them (figures.py). No entry point: paper/ runs them.

Reads from the root: train.py (a stage's folder and tasks), evaluate.py, checkpoint.py.
"""
