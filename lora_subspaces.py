"""
The LoRA subspaces IST tunes d_I numbers through besides MSF's (train.py --adapter lora --stage ist
--subspace …): what the literature since the paper uses, each with d_I numbers a task, on the same
held-out tasks. Each maps z (K, d_I) -> θ (K, N), a plain LoRA (lora.py), and says where z starts.

  msf       MSF's trained Proj_b, z read in the units of its training tasks' codes (Coded); z from
            N(0, 0.02²), the paper's start, there the training tasks' mean code
  mean      θ̄: the training tasks' mean canonical LoRA (Ā, B̄), the mean of the factors; 0 numbers (z is
            empty). Its B̄Ā is not the mean update: averaged factors of different tasks cancel
  delta-mean    ΔW̄ = mean_k B_k A_k, the mean update itself: a LoRA of rank K·r; 0 numbers
  delta-mean-r  ΔW̄'s best rank-r LoRA (truncated SVD, lora.mean_update; MSF starts there); 0 numbers
  delta-pca     ΔW̄ + Σ_j z_j D_j, D_j the top d_I principal directions of the updates ΔW_k (flattened,
            all layers; unit Frobenius norm), as PCA over θ but in the space where a sum is an update; z at 0
  pca       θ̄ + U z, U the top d_I principal directions of the training LoRAs (EigenLoRAx, the
            Universal Weight Subspace: PCA of a LoRA library; prompt_subspaces.py for prompts); z starts at 0
  hub       Σ_i w_i θ̃_i over d_I training LoRAs drawn at random (LoraHub's combination of A's and B's),
            w = z starting at 1/d_I (their mean; at 0 no gradient reaches A or B). LoraHub searches w
            gradient-free (Shiwa, 20 LoRAs, L1 on w); here w learns by gradient like every other z
  basis     θ₀ + R z, R (N, d_I) random orthonormal columns over all LoRA numbers (Uni-LoRA, VeRA's
            spirit), θ₀ PEFT's start (B = 0); z starts at 0
  fastfood  θ₀ + Fastfood(z) (DID's projection, did.py, over the LoRA numbers instead of the PLM's)
  random    MSF's Proj_b untrained (the paper's random-subspace baseline), z from N(0, 0.02²)

The delta- subspaces are weights over the library's own updates, ΔW = Σ_k w_k B_k A_k (w = 1/K + C z):
exactly a LoRA of rank K·r, [B_1 … B_K] [w_1 A_1; …; w_K A_K], so no ΔW is formed and the PLM reads it
as any LoRA (the stage's shape is the subspace's own, K·r; B carries K so that α / (K r) scales as α / r).

The library's LoRAs enter in canonical form (lora.canonical): a sum of raw (A, B) of different tasks
depends on each one's arbitrary gauge (A, B) ~ (R⁻¹A, BR); of canonical forms it does not.
"""
import torch
import torch.nn as nn

import did
import lora


class Subspace(nn.Module):
    """z (K, d) -> θ (K, N); z starts at 0 (where the subspace's origin is its start) unless it says otherwise."""

    def __init__(self, d):
        super().__init__()
        self.d = d

    def start(self, num_tasks):
        return torch.zeros(num_tasks, self.d)


class Coded(nn.Module):
    """MSF's Proj_b with z read in the units of its training tasks' codes: θ = Proj_b(μ + σ ⊙ z), μ and σ
    the mean and spread of Proj(θ̃_k) over the K training LoRAs. Proj reads θ̃ in the library's units
    (LoraAutoencoder), and its codes then spread over tens (55 on the world): IST's start N(0, 0.02²)
    and lr 0.1 would never reach them. So z = 0 is the training tasks' mean code, and a step of 0.1 a
    tenth of their spread, whatever scale MSF left the codes at."""

    def __init__(self, autoencoder, library):                         # library (K_train, N) canonical
        super().__init__()
        self.autoencoder = autoencoder
        with torch.no_grad():
            codes = autoencoder.encode(library)                        # (K_train, d_I)
        self.register_buffer("mu", codes.mean(0))
        self.register_buffer("sigma", codes.std(0) if len(codes) > 1 else torch.ones_like(codes[0]))

    def decode(self, z):                                               # (U, d_I) -> (U, N)
        return self.autoencoder.decode(self.mu + self.sigma * z)


class Mean(Subspace):
    def __init__(self, library):                                       # (K_train, N) canonical
        super().__init__(0)
        self.register_buffer("mean", library.mean(0))

    def decode(self, z):                                               # (K, 0) -> (K, N)
        return self.mean.expand(len(z), -1)


class Fixed(Subspace):
    """One LoRA for every task, 0 numbers: delta-mean-r."""

    def __init__(self, theta):
        super().__init__(0)
        self.register_buffer("theta", theta)

    def decode(self, z):
        return self.theta.expand(len(z), -1)


class UpdateSpan(Subspace):
    """ΔW = Σ_k w_k B_k A_k, w = 1/K + C z: delta-mean (d = 0) and delta-pca (C from the updates' PCA)."""

    def __init__(self, shape, library, d):
        super().__init__(d)
        K = len(library)
        if d > K - 1:
            raise ValueError(f"the PCA of {K} training LoRAs' updates has {K - 1} directions about their mean; "
                             f"--intrinsic-dim {d} asks for more")
        self.K, self.rank, self.shape = K, shape.rank, lora.LoraShape(shape.layers, K * shape.rank)
        wide = [(A, B * K) for A, B in lora.stacked(shape, library)]  # B carries K: α / (K r) reads as α / r
        self.register_buffer("library", self.shape.join(wide)[0])
        center = torch.eye(K, dtype=torch.float64) - 1.0 / K
        values, vectors = torch.linalg.eigh(center @ lora.gram(shape, library.double()) @ center)
        values, vectors = values.flip(0)[:d], vectors.flip(1)[:, :d]   # the top d
        if d and values[-1] <= 1e-12 * values[0].clamp(min=1e-300):
            raise ValueError(f"the training LoRAs' updates span fewer than {d} directions about their mean")
        self.register_buffer("C", (vectors / values.sqrt()).float())   # (K, d): D_j = Σ_k C_kj ΔW_k, ‖D_j‖ = 1

    def decode(self, z):                                               # (U, d) -> (U, N of rank K r)
        w = (1.0 / self.K + z @ self.C.T).repeat_interleave(self.rank, 1)   # (U, K r): each row of A_k by w_k
        pairs = [(A * w[:, :, None], B.expand(len(z), -1, -1)) for A, B in self.shape.split(self.library[None])]
        return self.shape.join(pairs)


class Principal(Subspace):
    def __init__(self, library, d):
        super().__init__(d)
        K = len(library)
        if d > K - 1:
            raise ValueError(f"the PCA of {K} training LoRAs has {K - 1} directions about their mean; "
                             f"--intrinsic-dim {d} asks for more")
        flat = library.double()
        mean = flat.mean(0)
        _, _, v = torch.linalg.svd(flat - mean, full_matrices=False)   # rows of v: principal directions
        self.register_buffer("mean", mean.float())
        self.register_buffer("U", v[:d].T.contiguous().float())        # (N, d_I)

    def decode(self, z):
        return self.mean + z @ self.U.T


class Hub(Subspace):
    def __init__(self, library, d, generator):
        super().__init__(d)
        if d > len(library):
            raise ValueError(f"LoraHub combines d_I of the {len(library)} training LoRAs; --intrinsic-dim {d} "
                             "asks for more")
        self.chosen = torch.randperm(len(library), generator=generator)[:d].sort().values
        self.register_buffer("loras", library[self.chosen].clone())    # (d_I, N)

    def start(self, num_tasks):
        return torch.full((num_tasks, self.d), 1.0 / self.d)

    def decode(self, z):
        return z @ self.loras


class Basis(Subspace):
    def __init__(self, shape, d, generator):
        super().__init__(d)
        self.register_buffer("origin", lora.init_lora(shape, generator))
        q, _ = torch.linalg.qr(torch.randn(shape.size, d, generator=generator, dtype=torch.float64))
        self.register_buffer("R", q.float())                           # (N, d_I), orthonormal

    def decode(self, z):
        return self.origin + z @ self.R.T


class FastfoodBasis(Subspace):
    def __init__(self, shape, d, generator):
        super().__init__(d)
        self.register_buffer("origin", lora.init_lora(shape, generator))
        self.fastfood = did.Fastfood(d, shape.size, generator)

    def decode(self, z):
        return self.origin + torch.stack([self.fastfood(row) for row in z])


def build(kind, shape, d, library, generator):
    """The subspace of --subspace `kind` (library: the training tasks' canonical LoRAs, or None where the
    kind needs none); ValueError when d_I is more than it allows."""
    if kind == "mean":
        return Mean(library)
    if kind == "delta-mean":
        return UpdateSpan(shape, library, 0)
    if kind == "delta-mean-r":
        return Fixed(lora.mean_update(shape, library))
    if kind == "delta-pca":
        return UpdateSpan(shape, library, d)
    if kind == "pca":
        return Principal(library, d)
    if kind == "hub":
        return Hub(library, d, generator)
    if kind == "basis":
        return Basis(shape, d, generator)
    return FastfoodBasis(shape, d, generator)


NEEDS_LIBRARY = ("mean", "delta-mean", "delta-mean-r", "delta-pca", "pca", "hub")
