"""
The tools: how fast is it, where does the time go, and how do its artifacts leave?

  bench.py        the whole procedure per task (the authors') against multi-task   python -m tools.bench (make bench)
  gpucheck.py     the device check: step parts, each optimisation's gain, the card's peak
                                                                                   python -m tools.gpucheck (make gpu-check)
  disk.py         what a run writes, and how long saving takes                     python -m tools.disk
  export_peft.py  prompts as PEFT prompt-tuning adapters                           python -m tools.export_peft
  real_device.sh  make real on a lent GPU, in pieces of one command each           bash tools/real_device.sh
  BENCH.md        the measurements, dated, with the machine named

Reads from the root: train.py, stages.py, plm.py, trainstep.py, data.py, checkpoint.py; and world/ for the
offline world's tasks.
"""
