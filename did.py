"""
The intrinsic-dimension baseline the IPT authors ran beside IST (§4.3; Aghajanyan et al., 2021,
"Intrinsic Dimensionality Explains the Effectiveness of Language Model Fine-Tuning"): DID, direct
intrinsic dimension. A task tunes d free numbers z, zero-initialised; *every* weight tensor of the
PLM moves along its own random d-dimensional subspace:

    θ^(D) = θ_0^(D) + P z,    P = Fastfood = H G Π H B  (scaled; one per weight tensor)

H is the Walsh–Hadamard matrix, B a random ±1 diagonal, Π a random permutation and G a Gaussian
diagonal; z is zero-padded to the next power of two L ≥ D and the first D entries are kept. P z
costs O(L log L) and no D×d matrix is ever stored. IST moves only the prompt inside a subspace
learnt from other tasks; DID moves the whole model inside a random one. The price shows in time:
every step rebuilds every weight (the report puts its time per step beside PT's).

Attached with torch's parametrisations, so the PLM's own forward computes θ_0 + P z and the
rest of the pipeline (ipt.token_losses, generation) runs unchanged. With z = 0 the model is
exactly the frozen one.
"""
import math

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

import data


def hadamard(x):
    """Unnormalised fast Walsh–Hadamard transform along the last dimension (a power of two):
    x @ H_L with H_1 = [1], H_2L = [[H_L, H_L], [H_L, −H_L]] (Sylvester's order)."""
    L = x.size(-1)
    assert L & (L - 1) == 0, f"Hadamard transform needs a power of two, got {L}"
    y, h = x, 1
    while h < L:
        y = y.reshape(*x.shape[:-1], L // (2 * h), 2, h)
        y = torch.stack([y[..., 0, :] + y[..., 1, :], y[..., 0, :] - y[..., 1, :]], -2)
        h *= 2
    return y.reshape(x.shape)


class Fastfood(nn.Module):
    """z (d,) -> P z (D,) for one weight tensor of D entries, with Aghajanyan et al.'s scaling:
    ‖P z‖ ≈ ‖z‖ whatever D, so one learning rate suits every tensor."""

    def __init__(self, d, D, generator):
        super().__init__()
        L = 2 ** math.ceil(math.log2(max(D, d)))
        self.d, self.D, self.L = d, D, L
        self.register_buffer("B", torch.randint(0, 2, (L,), generator=generator).float() * 2 - 1)
        self.register_buffer("Pi", torch.randperm(L, generator=generator))
        self.register_buffer("G", torch.randn(L, generator=generator))
        self.scale = 1.0 / (math.sqrt(L * (self.G ** 2).sum().item()) * math.sqrt(D / L))

    def forward(self, z):
        padded = torch.cat([z, z.new_zeros(self.L - self.d)])             # (L,)
        v = hadamard(self.B * padded)[self.Pi] * self.G                   # Π H B z, then G
        return hadamard(v)[:self.D] * self.scale                           # (D,)


class AddProjection(nn.Module):
    """A parametrisation θ_0 -> θ_0 + P z for one weight. z lives in the owning IntrinsicWeights,
    held by reference (not as a submodule), so the PLM itself still owns no trainable tensor."""

    def __init__(self, owner, fastfood):
        super().__init__()
        self._owner = [owner]
        self.fastfood = fastfood

    def forward(self, original):
        return original + self.fastfood(self._owner[0].z).view_as(original).to(original.dtype)


class IntrinsicWeights(nn.Module):
    """DID on a frozen PLM: z (d numbers) is the only trainable tensor. Attaching it rewires every
    parameter of `plm` (a tied one once, through every module that holds it)."""

    def __init__(self, plm, d, seed):
        super().__init__()
        self.z = nn.Parameter(torch.zeros(d))
        holders = {}
        for module_name, module in plm.named_modules():
            for name, p in module.named_parameters(recurse=False):
                holders.setdefault(id(p), []).append((module_name, module, name))
        total = 0
        for places in holders.values():
            first_name = f"{places[0][0]}.{places[0][2]}".lstrip(".")
            p = getattr(places[0][1], places[0][2])
            fastfood = Fastfood(d, p.numel(), data.task_generator(seed, first_name)).to(p.device)
            for _, module, name in places:
                parametrize.register_parametrization(module, name, AddProjection(self, fastfood), unsafe=True)
            total += p.numel()
        self.projected = total                                             # D: every weight of the PLM
