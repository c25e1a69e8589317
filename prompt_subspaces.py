"""
The prompt baselines beyond the paper, each asking whether MSF's non-linear, LM-trained subspace is
needed (lora_subspaces.py asks the same of LoRAs):

  LinearSubspace  (--subspace pca)  Proj_b(z) = P̄ + U z, U (P·H, d_I) the top d_I principal directions
                  of the training tasks' flattened PT prompts, P̄ their mean. Nothing trains in MSF's place:
                  U and P̄ come by an SVD, and IST tunes z through it as through MSF's. Its encoder,
                  Uᵀ(P − P̄), gives the best rank-d_I reconstruction of the training prompts in squared
                  error (Eckart–Young); MSF's autoencoder minimises the LM loss of its reconstructions too.
  RankOne, MultitaskPrompts  (--stage mpt, --subspace mpt)  multi-task prompt tuning (MPT, Wang et al.
                  2023; PEFT's MultitaskPromptTuning): prompt_k = P* ⊙ (u_k v_kᵀ), P* (P, H) shared, u_k (P),
                  v_k (H): P + H numbers a task. The source stage trains P*, u, v of the training tasks
                  together (loss Σ_k L_LM, Eq. PT; saves shared_prompt.safetensors); the target is IST with
                  P* frozen and z = [u; v]. MPT learns P* by distilling per-task teacher prompts into it;
                  like PEFT we leave the distillation out and start P* at the training tasks' mean PT prompt
                  (what the teachers would have taught) with u = v = 1, so every task starts at P* itself.
  mean_start, nearest  (--stage pt --transfer mean|nearest)  prompt transfer (SPoT, Vu et al. 2022): is
                  stage two's start, Proj_b of the task's own IST solution (§4.3), better than starting PT
                  from other tasks' prompts? mean: every task starts at P̄. nearest: at the PT prompt of its
                  most similar training task, SPoT's choice by cosine similarity of task embeddings. SPoT
                  embeds a task by a prompt tuned on it; here the embedding is the task's own IST z (d_I
                  numbers already tuned on it, where stage two starts too) against the training tasks'
                  codes Proj(P), both in MSF's subspace. Either way the run is PT, scored at its start.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

import ipt


# -----------------------------------------------------------------------------
# The linear subspace (PCA)

class LinearSubspace(nn.Module):
    """Proj_b(z) = P̄ + U z and Proj(P) = U^T (vec(P) − P̄), from K training prompts (K, P, H)."""

    def __init__(self, prompts, intrinsic_dim):
        super().__init__()
        K, self.P, self.H = prompts.shape
        if intrinsic_dim > K:
            raise ValueError(f"a linear subspace of {K} training prompts has at most {K} directions; "
                             f"--intrinsic-dim {intrinsic_dim} asks for more")
        flat = prompts.detach().flatten(1).double()                    # (K, P·H); float64: the SVD's precision
        mean = flat.mean(0)
        _, _, v = torch.linalg.svd(flat - mean, full_matrices=False)   # rows of v: principal directions
        self.register_buffer("mean", mean.float())                     # (P·H,)
        self.register_buffer("U", v[:intrinsic_dim].T.contiguous().float())   # (P·H, d_I), orthonormal columns

    def encode(self, prompts):                                         # (K, P, H) -> (K, d_I)
        return (prompts.flatten(1) - self.mean) @ self.U

    def decode(self, z):                                               # (K, d_I) -> (K, P, H)
        return (self.mean + z @ self.U.T).view(-1, self.P, self.H)

    def forward(self, prompts):
        return self.decode(self.encode(prompts))


# -----------------------------------------------------------------------------
# MPT's rank-one prompts

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


# -----------------------------------------------------------------------------
# SPoT's starts

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
