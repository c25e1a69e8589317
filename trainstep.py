"""
One training step, the part of the loop that touches the frozen model: the optimiser, the learning
rate schedule, and the stage's loss backpropagated over the step's rows (in length-sorted passes
under a token budget, with the gradient of one pass).
"""
import torch

import distributed
import ipt
from data import UserError


def lr_at(cfg, step):
    """Linear warm-up over the first `warmup` of the steps, then linear decay to 0."""
    warm = max(1, int(cfg.warmup * cfg.steps))
    return (step + 1) / warm if step < warm else max(0.0, (cfg.steps - step) / max(1, cfg.steps - warm))


def bf16(cfg, device):
    """--precision: bf16 autocast on CUDA by default, on a CPU when asked."""
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def autocast(cfg, device):
    """bf16 autocast of the frozen model's matmuls; the trainable tensors stay fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16(cfg, device))


def make_optimizer(cfg, params):
    """AdamW, or the Adafactor of Lester et al. (fixed lr, no relative step, no parameter scaling).
    Both keep state per tensor, and every task owns its tensors: a task trains as it would alone."""
    if cfg.optimizer == "adafactor":
        from transformers.optimization import Adafactor
        return Adafactor(params, lr=cfg.lr, scale_parameter=False, relative_step=False, warmup_init=False)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)


def forward_backward(cfg, model, stage, batch, num_tasks, autocast):
    """Backpropagate the stage's objective over the step's rows, in forward passes of at most
    --tokens-per-forward padded tokens (`chunks`); under torchrun, this rank's share of the rows,
    the gradients then summed over the ranks. Each task's loss is its token mean over the whole
    step (ipt.per_task_mean with the step's counts), and the once-a-step terms (MSF's α·rec) are
    added on one rank, whether it has rows or not: chunking and sharing leave the gradient as it
    is. -> the loss, a 0-dim tensor on the device: the loop reads it at evaluations, not every step
    (each read waits for the device)."""
    tokens = (batch.labels != ipt.IGNORE).float().sum(1)
    count = tokens.new_zeros(num_tasks).index_add(0, batch.task_idx, tokens)        # (K,) the whole step's
    if distributed.world() > 1:
        batch = batch.rows(distributed.mine(batch.input_ids.size(0)))
    once = distributed.is_main()
    total = count.new_zeros(())
    for rows, T, L in chunks(batch, cfg.tokens_per_forward) if len(batch.task_idx) else []:
        task_idx, labels = batch.task_idx[rows], batch.labels[rows, :L]
        with autocast:
            losses = ipt.token_losses(model, stage.prompts(task_idx), batch.input_ids[rows, :T],
                                      batch.attention_mask[rows, :T], labels, cfg.label_smoothing)
        loss = stage.objective(ipt.per_task_mean(losses, labels, task_idx, num_tasks, count), once)
        loss.backward()
        total, once = total + loss.detach(), False
    if once:                                     # no rows on this rank: its once-a-step terms alone
        loss = stage.objective(count.new_zeros(num_tasks), True)
        if loss.requires_grad:
            loss.backward()
        total = total + loss.detach()
    distributed.all_reduce_grads([p for p in stage.module.parameters() if p.requires_grad])
    return distributed.sum_tensor(total)


def forward_backward_in_memory(cfg, model, stage, batch, num_tasks, autocast):
    """forward_backward; when the device runs out of memory, the step again in passes of half as
    many tokens (kept in cfg.tokens_per_forward for the rest of the run: the gradient is the same).
    Single rows that still do not fit are an error that says what to lower."""
    while True:
        try:
            return forward_backward(cfg, model, stage, batch, num_tasks, autocast)
        except torch.OutOfMemoryError:
            for p in stage.module.parameters():
                p.grad = None                                  # a partial step's gradients
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            widest = int((batch.attention_mask.sum(1) + (batch.labels != ipt.IGNORE).sum(1)).max())
            if cfg.tokens_per_forward and cfg.tokens_per_forward <= widest:           # one row a pass already
                raise UserError(f"out of memory with one row a forward pass (--tokens-per-forward "
                                f"{cfg.tokens_per_forward}): lower --max-input-len or --prompt-len, or use a "
                                "device with more memory") from None
            cfg.tokens_per_forward = (cfg.tokens_per_forward or batch.input_ids.numel() + batch.labels.numel()) // 2
            print(f"out of memory: forward passes of at most {cfg.tokens_per_forward} tokens from now on "
                  "(--tokens-per-forward; the same gradient)", flush=True)


def clip_per_group(groups, max_norm):
    """Clip each group's gradient to `max_norm`, as torch.nn.utils.clip_grad_norm_ on that group alone
    would (bit for bit), with one _foreach_norm and one _foreach_mul_ for all groups instead of a
    call (and on a GPU a host sync) per task. groups: [[parameters]]; tensors without grad are skipped."""
    grads = [[p.grad for p in group if p.grad is not None] for group in groups]
    flat = [g for group in grads for g in group]
    if not flat:
        return
    norms, coefs, i = torch._foreach_norm(flat), [], 0
    for group in grads:
        if group:
            total = torch.linalg.vector_norm(torch.stack(norms[i:i + len(group)]))      # clip_grad_norm_'s
            coefs += [torch.clamp(max_norm / (total + 1e-6), max=1.0)] * len(group)
            i += len(group)
    torch._foreach_mul_(flat, coefs)


def chunks(batch, budget):
    """The step's rows as forward passes: [(row indices, input width T, target width L)].
    budget 0: one pass as collated. Else rows sorted by length and cut so that each pass pads at
    most `budget` tokens of x and y (the prompt comes on top; a longer row goes alone): a short
    row is padded to its neighbours' length, not to the step's longest."""
    lx, ly = batch.attention_mask.sum(1).tolist(), (batch.labels != ipt.IGNORE).sum(1).tolist()
    if not budget:
        return [(slice(None), batch.input_ids.size(1), batch.labels.size(1))]
    out, rows, T, L = [], [], 0, 0
    for i in sorted(range(len(lx)), key=lambda i: (lx[i] + ly[i], i)):
        t, l = max(T, lx[i]), max(L, ly[i])
        if rows and (len(rows) + 1) * (t + l) > budget:
            out.append((rows, T, L))
            rows, t, l = [], lx[i], ly[i]
        rows, T, L = rows + [i], t, l
    return out + [(rows, T, L)]
