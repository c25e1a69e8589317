"""
The offline world's "pretrained" model (world/world.py builds the world and calls `pretrain` once): a tiny T5
trained on a fresh (type, θ) every example with the task given explicitly, through the Conditioner, P
vectors that are a linear map of θ of the type's own, prepended like a prompt. Like a real PLM it then
does any task of the family when conditioned right, and prompt tuning has to find that conditioning
from K examples. Pretraining adds noise outside the kind's conditioning directions (pretrain_noise), so
that the model reads a prompt only along them (world/WORLD.md, v8).
"""
import json
import time

import torch
import torch.nn as nn
from tqdm import tqdm

import checkpoint
import data
import ipt


class Conditioner(nn.Module):
    """The pretraining-time task description: θ -> P vectors (P, H), a linear map of each type's
    own. So a kind's ideal prompts lie in a d*-dimensional linear subspace of R^{P·H}, the two
    kinds' subspaces differ, and both together span 2·d* dimensions."""

    def __init__(self, dim, prompt_len, d_model, types):
        super().__init__()
        self.P, self.H = prompt_len, d_model
        self.types = types
        self.maps = nn.ModuleDict({t: nn.Linear(dim, prompt_len * d_model) for t in types})

    def forward(self, thetas, kinds):                                        # (B, d*), [B] -> (B, P, H)
        every = torch.stack([self.maps[t](thetas) for t in self.types], 1)          # (B, types, P·H)
        out = every[torch.arange(len(kinds)), torch.tensor([self.types.index(k) for k in kinds])]
        return out.view(-1, self.P, self.H)

    def basis(self, kind):
        """Orthonormal columns spanning the kind's conditioning directions: (P·H, d*)."""
        return torch.linalg.qr(self.maps[kind].weight.detach())[0]

    def off_plane_noise(self, prompt, kinds, g, sigma):
        """Gaussian noise of σ × rms(prompt) with each row's component in its kind's conditioning
        directions removed: (B, P, H) like prompt."""
        noise = torch.randn(prompt.shape, generator=g).flatten(1)              # (B, P·H)
        for t in self.types:
            rows = torch.tensor([k == t for k in kinds])
            basis = self.basis(t)
            noise[rows] -= noise[rows] @ basis @ basis.T
        return sigma * prompt.detach().pow(2).mean().sqrt() * noise.view_as(prompt)


def tiny_t5(vocab_size, d_model, layers):
    """A small T5 with 4 heads, `layers` encoder and 2 decoder layers, no dropout."""
    from transformers import T5Config, T5ForConditionalGeneration
    return T5ForConditionalGeneration(T5Config(
        vocab_size=vocab_size, d_model=d_model, d_kv=d_model // 4, d_ff=2 * d_model,
        num_layers=layers, num_decoder_layers=2, num_heads=4, dropout_rate=0.0,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))


def sample_batch(world, tokenizer, g, n, thetas=None, kinds=None):
    """n examples of fresh random tasks (θ ~ N(0, 1.3² I), broader than any category) ->
    (Batch, thetas (n, d*), kinds, (input, target) pairs)."""
    if kinds is None:
        kinds = [world.types[i] for i in torch.randint(len(world.types), (n,), generator=g).tolist()]
    if thetas is None:
        thetas = 1.3 * torch.randn(n, world.cfg.dim, generator=g)
    pairs = [world.example(k, th, g) for k, th in zip(kinds, thetas)]
    return encode(tokenizer, pairs), thetas, kinds, pairs


def encode(tokenizer, pairs):
    """World (input, target) pairs -> one Batch (inputs and targets are a few words each)."""
    src = data.tokenize(tokenizer, [x for x, _ in pairs], 64)
    tgt = data.tokenize(tokenizer, [y for _, y in pairs], 16)
    return data.collate([(0, s, t) for s, t in zip(src, tgt)], tokenizer.pad_token_id)


def pretrain(world, tokenizer, root):
    """Train T5 + conditioner on fresh tasks; save the T5 (HF format) and the conditioner."""
    cfg = world.cfg
    torch.manual_seed(cfg.seed)
    t5 = tiny_t5(len(tokenizer), cfg.d_model, cfg.layers)
    cond = Conditioner(cfg.dim, cfg.prompt_len, cfg.d_model, world.types)
    params = list(t5.parameters()) + list(cond.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.pretrain_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed + 2)
    started = time.time()
    bar = tqdm(range(cfg.pretrain_steps), desc="pretraining the world's T5", disable=None)
    for step in bar:
        for group in optimizer.param_groups:                                  # warm-up, then linear decay
            group["lr"] = cfg.pretrain_lr * min(1.0, (step + 1) / 200) * (1 - step / cfg.pretrain_steps)
        batch, thetas, kinds, _ = sample_batch(world, tokenizer, g, cfg.pretrain_batch)
        prompt = cond(thetas, kinds)                                         # (B, P, H)
        if cfg.pretrain_noise:      # teaches the model to read a prompt only along the kind's d* directions
            prompt = prompt + cond.off_plane_noise(prompt, kinds, g, cfg.pretrain_noise)
        losses = ipt.token_losses(t5, prompt, batch.input_ids, batch.attention_mask, batch.labels)
        loss = losses.sum() / (batch.labels != ipt.IGNORE).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if bar.disable and (step + 1) % 500 == 0:          # no terminal (make demo > log): a plain line
            print(f"pretraining the world's T5: step {step + 1}/{cfg.pretrain_steps}, loss {loss.item():.3f}, "
                  f"{time.time() - started:.0f} s", flush=True)
    t5.eval()
    t5.save_pretrained(root / "model")
    checkpoint.save(root / "conditioner.safetensors", cond.state_dict())
    report = {"seconds": round(time.time() - started), "steps": cfg.pretrain_steps, "noise": cfg.pretrain_noise,
              **conditioned_accuracy(world, tokenizer, t5, cond)}
    print("pretrained:", json.dumps(report))
    return report


@torch.no_grad()
def conditioned_accuracy(world, tokenizer, t5, cond, n=1000):
    """Accuracy with the true conditioning, per type, on fresh θ drawn as the world's tasks are
    (a category centre + spread), the first n/2 of each type: the ceiling prompt tuning aims at."""
    g = torch.Generator().manual_seed(world.cfg.seed + 3)
    kinds = [world.types[i % len(world.types)] for i in range(n)]
    centre = torch.randint(len(world.categories), (n,), generator=g)
    thetas = torch.stack([world.centres[world.types.index(k), c] for k, c in zip(kinds, centre.tolist())])
    thetas = thetas + world.cfg.category_spread * torch.randn(n, world.cfg.dim, generator=g)
    batch, _, _, pairs = sample_batch(world, tokenizer, g, n, thetas, kinds)
    ids = ipt.generate(t5, cond(thetas, kinds), batch.input_ids, batch.attention_mask, max_new_tokens=8)
    preds = [p.strip() for p in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return {f"accuracy_{t}": sum(p == y for p, (_, y), k in zip(preds, pairs, kinds) if k == t) / kinds.count(t)
            for t in world.types}
