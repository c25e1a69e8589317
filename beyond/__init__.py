"""
The studies beyond the paper: what a reviewer asks for today. Each gives the runner its stages and
the report its section; the methods they compare are at the root, beside the paper's.

  beyond.py       IST through the training prompts' linear span, MPT and SPoT (prompt_subspaces.py)
  similarity.py   task similarity: the cosine of IST's z, by kind and category
  lora_study.py   the intrinsic task subspace of LoRA (lora.py, lora_subspaces.py, lora_stages.py)
                                                                                   make lora

Reads from the root: data.py; and runner/ for jobs, cells, results and figures.
"""
