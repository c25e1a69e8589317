"""
The paper's results as one command: every train.py stage that Fig. 3–6 and Tables 2–4 need, run in
order and resumed where they stopped, with the baselines and the studies beyond the paper beside
them; then the report.

  experiments.py     the plan and its run        python -m paper.experiments (make demo, paper, lora, real)
  runner_options.py  its options, checked before anything loads
  report.py          report.md, its figures and one TSV of every per-task number

Reads from the root: train.py, config.py, data.py, plm.py, cli.py; runner/, beyond/ and world/.
"""
