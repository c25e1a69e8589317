"""
Several processes (torchrun): each step's rows and each evaluation's rows are shared out over the
ranks; the gradients of the (small) trainable tensors are summed; rank 0 alone writes files.

    torchrun --standalone --nproc_per_node 4 -- train.py --stage pt ...   # 4 GPUs (NCCL), or CPU processes (gloo)

(The `--` keeps torchrun from reading train.py's --run as an abbreviation of its own --run-path.)

Every rank builds the same batches (the batcher is seeded), so a rank needs no data from another:
it takes rows rank, rank + N, … of the step, and the loss keeps the whole step's per-task token
counts, so the summed gradient is the one-process gradient. Every rank then takes the same
optimiser step and the same best-dev decisions. Without torchrun nothing here does anything.
"""
import os
import sys

import torch
import torch.distributed as dist


def world():
    return dist.get_world_size() if dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def is_main():
    return rank() == 0


def setup(device):
    """Join the process group that torchrun describes (WORLD_SIZE > 1). -> this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.get_rank():                                  # one rank reports; errors still reach stderr
        sys.stdout = open(os.devnull, "w")
    return device


def teardown():
    """Leave the process group before Python exits. Without it gloo's worker threads can outlive
    the interpreter and abort the process ("terminate called without an active exception"):
    pytorch/pytorch#190489; it failed one CI run of tests/test_distributed.py."""
    if dist.is_initialized():
        dist.destroy_process_group()


def mine(n):
    """This rank's share of n rows: indices rank, rank + world, …"""
    return list(range(rank(), n, world()))


def all_reduce_grads(params):
    """Sum the gradients over the ranks, in one message. A tensor that no rank touched keeps grad
    None (so Adam leaves a finished task alone, as in one process)."""
    if world() == 1:
        return
    touched = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float() for p in params]
                     + [touched])
    dist.all_reduce(flat)
    start = 0
    for p, t in zip(params, flat[-len(params):]):
        g = flat[start:start + p.numel()].view_as(p).to(p.dtype)
        p.grad = g if t > 0 else None
        start += p.numel()


def sum_tensor(t):
    """A 0-dim tensor summed over the ranks, left on its device (no wait for it to be read)."""
    if world() == 1:
        return t
    t = t.detach().double().reshape(1)
    dist.all_reduce(t)
    return t[0]


def gather(part, n):
    """Each rank's {row index: value} for its rows of `mine(n)` -> the list of all n values, on every rank."""
    if world() == 1:
        return [part[i] for i in range(n)]
    parts = [None] * world()
    dist.all_gather_object(parts, part)
    merged = {i: v for p in parts for i, v in p.items()}
    return [merged[i] for i in range(n)]
