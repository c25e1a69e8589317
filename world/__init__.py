"""
The offline world: can the method be checked against known answers? A world of tasks whose every
task is a point of a planted d*-dimensional subspace, read by a tiny T5 pretrained on it, so that
IST's knee has a right answer (3 per kind, 4 on the random split).

  world.py        builds (or reuses) the world: its tasks, files and model   python -m world.world
  pretraining.py  the world's "pretrained" model
  world_cache.py  the built world verified against its own record
  oracle.py       IST through the world's true conditioning: its own knee    python -m world.oracle (make oracle)
  numerics.py     the world's arithmetic pinned (the same bits on one machine and among one vendor's CPUs)
  shipped/        the pretrained model, so that no one pretrains for 7 minutes
  WORLD.md        the world's versions, measurements and bands, dated

Reads from the root: data.py (the task table and files it writes), ipt.py, checkpoint.py, evaluate.py, cli.py.
"""
