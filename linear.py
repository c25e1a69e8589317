"""
The linear subspace (a baseline beyond the paper): is MSF's non-linear, LM-trained autoencoder
needed, or does the plain linear span of the training tasks' prompts do as well?

    Proj_b(z) = P̄ + U z,   U (P·H, d_I): the top d_I principal directions of the training tasks'
                           flattened PT prompts, P̄ their mean

Nothing trains in MSF's place: U and P̄ come from the prompts by an SVD, and IST then tunes z
through this Proj_b exactly as through MSF's (train.py --stage ist --subspace pca). Its encoder,
U^T (P − P̄), gives the best rank-d_I reconstruction of the training prompts in squared error
(Eckart–Young); MSF's autoencoder minimises the LM loss of its reconstructions as well.
"""
import torch
import torch.nn as nn


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
