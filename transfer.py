"""
Prompt transfer (SPoT, Vu et al. 2022), a baseline beyond the paper: is stage two's start, Proj_b of
the task's own IST solution (§4.3), better than starting prompt tuning from other tasks' prompts?

  mean     every task starts at P̄, the mean of the training tasks' PT prompts
  nearest  each task starts at the PT prompt of its most similar training task, SPoT's choice by
           cosine similarity of task embeddings. SPoT embeds a task by a prompt tuned on it; here
           the embedding is the task's own IST z (d_I numbers already tuned on it, where stage two
           starts too) against the training tasks' codes Proj(P), both in MSF's subspace: no extra
           prompt tuning of the target task before its prompt tuning.

Either way the run is PT (train.py --stage pt --transfer mean|nearest), scored at its start (step 0).
"""
import torch
import torch.nn.functional as F


def mean_start(prompts, num_tasks):
    """(K, P, H) training prompts -> (num_tasks, P, H), each their mean P̄."""
    return prompts.mean(0, keepdim=True).expand(num_tasks, -1, -1).clone()


def nearest(z, codes, exclude=None):
    """z (N, d_I) the tasks' own, codes (K, d_I) the training tasks' Proj(P) -> (index (N,) of the most
    cosine-similar training task, its similarity (N,)). exclude (N, K) bool: pairs never chosen (a
    training task is not its own source)."""
    similarity = F.cosine_similarity(z[:, None, :], codes[None, :, :], dim=-1)     # (N, K)
    if exclude is not None:
        similarity = similarity.masked_fill(exclude, -torch.inf)
    best, index = similarity.max(1)
    return index, best
