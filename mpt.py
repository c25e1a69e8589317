"""
Multi-task prompt tuning (MPT, Wang et al. 2023; PEFT's MultitaskPromptTuning), a baseline beyond the
paper that also shares what tasks have in common and tunes a few numbers per task:

    prompt_k = P* ⊙ (u_k v_kᵀ)     P* (P, H) shared; u_k (P), v_k (H): rank one, P + H numbers a task

  train.py --stage mpt                  the source: P*, u and v of the split's training tasks train
                                        together (loss Σ_k L_LM, Eq. PT); saves shared_prompt.safetensors
  train.py --stage ist --subspace mpt   the target: P* frozen, only each task's u, v train — IST with
                                        Proj_b(z) = P* ⊙ (u vᵀ), z = [u; v]

MPT learns P* by distilling per-task teacher prompts into it; like PEFT we leave the distillation out,
and start P* at the mean of the training tasks' PT prompts (what the teachers would have taught) with
u = v = 1, so that every task starts at P* itself.
"""
import torch
import torch.nn as nn

import ipt


class RankOne(nn.Module):
    """Proj_b(z) = P* ⊙ (u vᵀ) with z = [u; v] (P + H numbers): IST's decode, MPT's prompt."""

    def __init__(self, shared):                                        # shared (P, H): P*
        super().__init__()
        self.P, self.H = shared.shape
        self.shared = nn.Parameter(shared.detach().clone())

    def start(self, num_tasks):                                        # u = v = 1: the prompt is P*
        return torch.ones(num_tasks, self.P + self.H)

    def decode(self, z):                                               # (K, P + H) -> (K, P, H)
        u, v = z[:, :self.P], z[:, self.P:]
        return self.shared * (u[:, :, None] * v[:, None, :])


class MultitaskPrompts(ipt.IntrinsicPrompts):
    """The source stage: IST's prompts through RankOne, with P* trainable too (one z = [u; v] a task)."""

    def __init__(self, shared, num_tasks):
        rank_one = RankOne(shared)
        super().__init__(rank_one, rank_one.start(num_tasks))
        self.autoencoder.requires_grad_(True)                          # IST freezes it; MPT's source trains P*
