"""
IPT with a LoRA in place of the soft prompt (beyond the paper): do the LoRAs of many tasks live in one
low-dimensional subspace, and is it the prompts'? The same three stages, the same loop; what changes
is what a task owns and how the frozen PLM reads it.

  Eq. LoRA     h = W x + (α/r) · B A x on each target layer, W frozen;      -> RowLoRA, TaskLoRAs
               A (r, in), B (out, r); a task's LoRA is θ = [A_1; B_1; …; A_L; B_L] (N = Σ_l r(in_l + out_l))
  canonical    (A, B) and (R⁻¹A, BR) are the same update ΔW = BA. The encoder reads the one form of   -> canonical
               ΔW: B̃ = U S^½, Ã = S^½ Vᵀ from ΔW's thin SVD, each singular pair's sign fixed
  Eq. MSF-rec  θ̂ = Proj_b(Proj(θ̃)), the paper's maps over θ̃, Proj_b's last layer factored and the  -> LoraAutoencoder
               start at the library's mean update (a real PLM's N makes d'_I × N larger than the PLM)
  Eq. MSF      L_LM(θ̂) + α · Σ_l ‖B̂Â − BA‖²_F / Σ_l ‖BA‖²_F                  -> ReconstructedLoRAs, delta_error
  Eq. IST      θ = Proj_b(z), Proj_b and W frozen: d_I numbers a task            -> IntrinsicLoRAs

The decoder's output is a plain (A, B) in whatever gauge it likes: the LM loss and the reconstruction
error see only ΔŴ = B̂Â. The error is relative (a LoRA's scale depends on r, α and the learning rate,
so α means the same whatever they are) and needs no ΔW: ⟨B₁A₁, B₂A₂⟩_F = Σ (B₁ᵀB₂) ⊙ (A₁A₂ᵀ), r × r.

Shapes: B batch rows, T tokens, K tasks, U distinct tasks of a batch, N a LoRA's numbers, r rank.
As the prompt modules, every LoRA module keeps one Parameter per task (a finished task gets grad None)
and the rows of one batch may belong to different tasks: each row's (A, B) is gathered per row (PEFT's
mixed-batch `adapter_names`, one matmul for all rows).
"""
from dataclasses import dataclass

import torch
import torch.nn as nn

import ipt


DEFAULT_TARGETS = {True: ("q", "v"), False: ("q_proj", "v_proj")}   # T5's attention; Llama / Qwen / SmolLM's


@dataclass(frozen=True)
class LoraShape:
    """Where a LoRA goes and how big it is: the target layers (name, in, out) in the PLM's order."""
    layers: tuple
    rank: int

    @property
    def size(self):                                                    # N
        return sum(self.rank * (i + o) for _, i, o in self.layers)

    def split(self, theta):
        """θ (K, N) -> [(A (K, r, in), B (K, out, r))] per layer, views of θ. One split, not a slice a
        factor: a slice's backward writes a zero (K, N) gradient, 28 of them 80 % of a world step at r = 512."""
        r = self.rank
        parts = theta.split([r * n for _, i, o in self.layers for n in (i, o)], 1)
        return [(parts[2 * j].view(-1, r, i), parts[2 * j + 1].view(-1, o, r)) for j, (_, i, o) in enumerate(self.layers)]

    def join(self, pairs):                                             # the inverse of split
        return torch.cat([t.flatten(1) for A, B in pairs for t in (A, B)], 1)


def target_layers(plm, targets, rank):
    """The PLM's nn.Linear layers whose last name is one of `targets` (PEFT's target_modules match)
    -> LoraShape; ValueError naming the model's layer names when a target matches none."""
    layers = [(n, m.in_features, m.out_features) for n, m in plm.named_modules()
              if isinstance(m, nn.Linear) and n.rsplit(".", 1)[-1] in targets]
    found = {n.rsplit(".", 1)[-1] for n, _, _ in layers}
    if set(targets) - found:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in plm.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"--lora-targets {','.join(sorted(set(targets) - found))}: no such linear layer in "
                         f"{type(plm).__name__}; its linear layers are named {', '.join(names)}")
    return LoraShape(tuple(layers), rank)


# -----------------------------------------------------------------------------
# Eq. LoRA on the frozen PLM, each row of a batch with its own task's (A, B)

class RowLoRA:
    """Forward hooks on the frozen PLM's target layers that add (α/r) · B A x, A and B those of the
    row's task. Called with task_idx (B,) it binds them for the passes that follow (the encoder's and
    the decoder's) and returns None: the PLM gets no prompt. make: tasks (U,) -> θ (U, N)."""

    def __init__(self, plm, shape, alpha, make):
        self.shape, self.scale, self.make, self.bound = shape, alpha / shape.rank, make, None
        modules = dict(plm.named_modules())
        self.handles = [modules[name].register_forward_hook(self.hook(i)) for i, (name, _, _) in enumerate(shape.layers)]

    def __call__(self, task_idx):
        tasks, rows = task_idx.unique(return_inverse=True)
        self.bound = (self.shape.split(self.make(tasks)), rows)
        return None

    def hook(self, layer):
        def add(module, inputs, output):
            if self.bound is None:
                return output
            pairs, rows = self.bound
            A, B = pairs[layer]
            x = inputs[0]                                              # (B, T, in)
            if x.size(0) != len(rows):                                 # beam search: each row's beams in a block
                if x.size(0) % len(rows):
                    raise RuntimeError(f"{x.size(0)} rows reach a LoRA layer bound to {len(rows)}: bind the rows "
                                       "of each pass (call the stage's prompts with its task_idx) before it")
                rows = rows.repeat_interleave(x.size(0) // len(rows))
            A, B = A.to(x.dtype)[rows], B.to(x.dtype)[rows]             # (B, r, in), (B, out, r)
            return output + self.scale * ((x @ A.transpose(1, 2)) @ B.transpose(1, 2))   # (B, T, out)
        return add

    def remove(self):
        for h in self.handles:
            h.remove()


def init_lora(shape, generator):
    """PEFT's start: A as nn.Linear's default (kaiming-uniform, a = √5), B = 0, so ΔW = 0. -> θ (N,)"""
    pairs = []
    for _, i, o in shape.layers:
        bound = 1 / i ** 0.5                                           # kaiming_uniform_(a=√5) on (r, in)
        pairs.append(((torch.rand(1, shape.rank, i, generator=generator) * 2 - 1) * bound,
                      torch.zeros(1, o, shape.rank)))
    return shape.join(pairs)[0]


class TaskLoRAs(nn.Module):
    """Eq. LoRA: one free θ = (A, B per layer) per task."""

    def __init__(self, init):                                          # init (K, N)
        super().__init__()
        self.loras = nn.ParameterList(nn.Parameter(t.clone()) for t in init)

    def vectors(self, tasks):                                          # (U,) -> (U, N)
        return torch.stack([self.loras[t] for t in tasks.tolist()])


# -----------------------------------------------------------------------------
# The one form of a LoRA, and the error between two without forming ΔW

def top_factors(A, B, r):
    """The best rank-r approximation of B A, in the one form: A (K, R, in), B (K, out, R), R ≥ r ->
    Ã (K, r, in), B̃ (K, out, r) with B̃Ã = the top r singular triples (U S^½)(S^½ Vᵀ), the largest entry
    of each column of U positive. Through QR of B and Aᵀ, so the SVD is of an R × R core, in float64."""
    QB, RB = torch.linalg.qr(B.double())                               # (K, out, R), (K, R, R)
    QA, RA = torch.linalg.qr(A.double().transpose(1, 2))               # (K, in, R), (K, R, R)
    Uc, S, Vch = torch.linalg.svd(RB @ RA.transpose(1, 2))             # BA = QB (RB RAᵀ) QAᵀ
    U, V, S = QB @ Uc[..., :r], QA @ Vch.transpose(1, 2)[..., :r], S[:, :r]   # (K, out, r), (K, in, r)
    top = U.abs().argmax(1, keepdim=True)                              # (K, 1, r)
    sign = U.gather(1, top).sign()
    sign[sign == 0] = 1.0                                              # ΔW = 0 in that direction
    root = S.sqrt()[:, None, :]                                        # (K, 1, r)
    return (V * sign * root).transpose(1, 2), U * sign * root


@torch.no_grad()
def canonical(shape, theta):
    """θ (K, N) -> θ̃ (K, N): each layer's ΔW = BA written as B̃ = U S^½, Ã = S^½ Vᵀ from its thin SVD."""
    pairs = [top_factors(A, B, shape.rank) for A, B in shape.split(theta)]
    return shape.join(pairs).to(theta.dtype)


def stacked(shape, library):
    """The library's K LoRAs side by side, one pair per layer: Σ_k B_k A_k = [B_1 … B_K][A_1; …; A_K], a
    product of rank K·r. library (K, N) -> [(A (1, K r, in), B (1, out, K r))]"""
    return [(A.reshape(1, -1, A.size(2)), B.permute(1, 0, 2).reshape(1, B.size(1), -1)) for A, B in shape.split(library)]


@torch.no_grad()
def mean_update(shape, library):
    """The library's mean update ΔW̄ = mean_k B_k A_k of each layer, as its best rank-r LoRA (truncated
    SVD): library (K, N) -> θ (N,)."""
    pairs = [top_factors(A, B / len(library), shape.rank) for A, B in stacked(shape, library)]
    return shape.join(pairs)[0].to(library.dtype)


def inner(shape, theta1, theta2):
    """⟨ΔW₁, ΔW₂⟩_F summed over layers, per task: θ (K, N) each -> (K,), by r × r products."""
    total = 0
    for (A1, B1), (A2, B2) in zip(shape.split(theta1), shape.split(theta2)):
        total = total + ((B1.transpose(1, 2) @ B2) * (A1 @ A2.transpose(1, 2))).sum((1, 2))
    return total


def gram(shape, theta):
    """⟨ΔW_k, ΔW_l⟩_F summed over layers, every pair: θ (K, N) -> (K, K), by r × r products."""
    total = 0
    for A, B in shape.split(theta):
        total = total + (torch.einsum("kor,los->klrs", B, B) * torch.einsum("kri,lsi->klrs", A, A)).sum((2, 3))
    return total


def delta_error(shape, theta_hat, theta):
    """MSF's reconstruction term: Σ ‖ΔŴ − ΔW‖²_F / Σ ‖ΔW‖²_F over tasks and layers (0: exact)."""
    err = inner(shape, theta_hat, theta_hat) - 2 * inner(shape, theta_hat, theta) + inner(shape, theta, theta)
    return err.sum() / inner(shape, theta, theta).sum().clamp(min=1e-12)


# -----------------------------------------------------------------------------
# MSF and IST over LoRAs

class LoraAutoencoder(nn.Module):
    """The paper's autoencoder over a LoRA's θ̃, sized and started for real PLMs.
    Proj: N -> d_I. Proj_b: d_I -> d'_I, tanh, -> m -> N: its last layer factored (N × m · m × d'_I), so it
    has m·N numbers, not d'_I·N (d'_I = H = 576 and N = 460,800 on SmolLM2 would be twice the PLM).
    Both read θ̃ about an origin and in the library's units: θ̂ = origin + scale · Proj_b(z), z =
    Proj((θ̃ − origin) / scale), so a library of any scale starts and steps alike (start_at)."""

    def __init__(self, size, intrinsic_dim, hidden_dim, basis_rank):
        super().__init__()
        self.proj = nn.Linear(size, intrinsic_dim)
        self.proj_b = nn.Sequential(nn.Linear(intrinsic_dim, hidden_dim), nn.Tanh(),
                                    nn.Linear(hidden_dim, basis_rank, bias=False), nn.Linear(basis_rank, size))
        self.register_buffer("origin", torch.zeros(size))                # (N,)
        self.register_buffer("scale", torch.ones(()))

    @torch.no_grad()
    def start_at(self, shape, library):
        """MSF's start: every θ̂ is the library's mean update's best rank-r LoRA (mean_update), whose
        error Σ_k ‖ΔŴ − ΔW_k‖² / Σ_k ‖ΔW_k‖² = 1 − K ‖T_r(ΔW̄)‖² / Σ_k ‖ΔW_k‖² ≤ 1 at any scale (an
        untrained Proj_b's output is O(1) whatever the library's, 10⁴ times its ΔW on a real model's
        40-step LoRAs). The last layer starts at 0 (LoRA's own B = 0): the first step's gradient reaches it."""
        self.origin.copy_(mean_update(shape, library))
        self.scale.copy_((library - self.origin).pow(2).mean().sqrt().clamp(min=1e-30))
        self.proj_b[-1].weight.zero_()
        self.proj_b[-1].bias.zero_()

    def encode(self, theta):                                           # (K, N) -> (K, d_I)
        return self.proj((theta - self.origin) / self.scale)

    def decode(self, z):                                               # (K, d_I) -> (K, N)
        return self.origin + self.scale * self.proj_b(z)

    def forward(self, theta):                                          # θ̂ = Proj_b(Proj(θ̃))
        return self.decode(self.encode(theta))


class ReconstructedLoRAs(nn.Module):
    """MSF's LoRA for task k is the reconstruction of its canonical PT LoRA; only the autoencoder trains."""

    def __init__(self, autoencoder, shape, pt_loras):                  # pt_loras (K, N), canonical
        super().__init__()
        self.autoencoder, self.shape = autoencoder, shape
        self.register_buffer("pt_loras", pt_loras.detach().clone(), persistent=False)

    def vectors(self, tasks):                                          # (U,) -> (U, N)
        return self.autoencoder(self.pt_loras[tasks])

    def reconstruction_error(self, tasks):
        return delta_error(self.shape, self.vectors(tasks), self.pt_loras[tasks])


class IntrinsicLoRAs(nn.Module):
    """θ_k = Proj_b(z_k): only z trains. Proj_b is MSF's decoder, or a baseline's map (lora_subspaces.py)."""

    def __init__(self, subspace, z_init):                              # z_init (K, d_I)
        super().__init__()
        self.subspace = ipt.freeze(subspace)
        self.z = nn.ParameterList(nn.Parameter(z.clone()) for z in z_init)

    def vectors(self, tasks):                                          # (U,) -> (U, N)
        return self.subspace.decode(torch.stack([self.z[t] for t in tasks.tolist()]))
