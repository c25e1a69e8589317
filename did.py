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
import functools
import math

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

import data


@functools.lru_cache(maxsize=None)
def sylvester(n, dtype=torch.float32, device=None):
    """The n × n Walsh–Hadamard matrix in Sylvester's order: H_1 = [1], H_2n = [[H_n, H_n], [H_n, −H_n]]."""
    H = torch.ones(1, 1, dtype=dtype, device=device)
    while H.size(0) < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


def hadamard(x, block=32):
    """Unnormalised fast Walsh–Hadamard transform along the last dimension (a power of two L):
    x @ H_L. Sylvester's H_L is a Kronecker product of small ones (H_ab = H_a ⊗ H_b), so x is viewed
    as (…, L/(f·r), f, r) and multiplied by H_f along the middle axis, f ≤ `block` at a time:
    O(L log L) work in a few matrix products instead of log2 L Python-level butterfly passes."""
    L = x.size(-1)
    assert L & (L - 1) == 0, f"Hadamard transform needs a power of two, got {L}"
    y, right = x.reshape(-1, L), 1
    while right < L:
        f = min(block, L // right)
        H = sylvester(f, x.dtype, x.device)
        y = torch.einsum("nafr,fg->nagr", y.view(len(y), L // (f * right), f, right), H).reshape(len(y), L)
        right *= f
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

    def __init__(self, owner, key):
        super().__init__()
        self._owner, self.key = [owner], key

    def forward(self, original):
        return original + self._owner[0].delta(self.key).view_as(original).to(original.dtype)


class IntrinsicWeights(nn.Module):
    """DID on a frozen PLM: z (d numbers) is the only trainable tensor. Attaching it rewires every
    parameter of `plm` (a tied one once, through every module that holds it).

    Each weight has its own Fastfood (as Aghajanyan et al.'s intrinsic.py); those of one padded
    length L are stacked and transformed together, and all P z are computed once per value of z
    (per forward pass while training, once for a whole evaluation), not at every weight access."""

    def __init__(self, plm, d, seed):
        super().__init__()
        self.z = nn.Parameter(torch.zeros(d))
        holders = {}
        for module_name, module in plm.named_modules():
            for name, p in module.named_parameters(recurse=False):
                holders.setdefault(id(p), []).append((module_name, module, name))
        groups, self.slots = {}, {}                                        # L -> [Fastfood]; key -> (L, row, D)
        for key, places in enumerate(holders.values()):
            first_name = f"{places[0][0]}.{places[0][2]}".lstrip(".")
            p = getattr(places[0][1], places[0][2])
            fastfood = Fastfood(d, p.numel(), data.task_generator(seed, first_name)).to(p.device)
            self.slots[key] = (fastfood.L, len(groups.setdefault(fastfood.L, [])), fastfood.D)
            groups[fastfood.L].append(fastfood)
            for _, module, name in places:
                parametrize.register_parametrization(module, name, AddProjection(self, key), unsafe=True)
        for L, fs in groups.items():                                       # (n, L) each
            for part in ("B", "Pi", "G"):
                self.register_buffer(f"{part}_{L}", torch.stack([getattr(f, part) for f in fs]))
            self.register_buffer(f"scale_{L}", torch.tensor([f.scale for f in fs]))
        self.lengths = sorted(groups)
        self.projected = sum(D for _, _, D in self.slots.values())        # D: every weight of the PLM
        self._cache = None

    def project(self):
        """P z of every weight, by padded length: {L: (n, L)}; Fastfood.forward, n rows at once."""
        out = {}
        for L in self.lengths:
            B, Pi, G = (getattr(self, f"{part}_{L}") for part in ("B", "Pi", "G"))
            padded = torch.cat([self.z, self.z.new_zeros(L - len(self.z))])
            v = torch.gather(hadamard(B * padded), 1, Pi) * G                    # Π H B z, then G
            out[L] = hadamard(v) * getattr(self, f"scale_{L}")[:, None]
        return out

    def delta(self, key):
        """One weight's P z. Computed for all weights when z has changed (or autograd mode has), and
        while training dropped once backward has gone through it, so each pass gets its own graph."""
        state = (self.z._version, torch.is_grad_enabled())
        if self._cache is None or self._cache[0] != state:
            projected = self.project()
            if state[1]:
                for t in projected.values():
                    t.register_hook(self._drop)
            # rows split once: the backward of one unbind stacks them, where n row-slices would each
            # scatter into a zero (n, L) tensor
            self._cache = (state, {L: t.unbind(0) for L, t in projected.items()})
        L, row, D = self.slots[key]
        return self._cache[1][L][row][:D]

    def _drop(self, grad):
        self._cache = None
        return grad
