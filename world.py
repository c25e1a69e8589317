"""
An offline task world with a planted intrinsic dimension, and a "pretrained" tiny T5 for it.

No pretrained T5 can be downloaded here, so the demo builds a world where the answer is known.
Items are nonce words, each with a hidden feature vector f(w) ∈ R^{d*}. A task is (type, θ) with
θ ∈ R^{d*}; the type shows in the input's form, so all a task's adaptation must supply is θ:
d* numbers, the planted intrinsic dimension.

  pick  (non-cls, EM)   "pick: w1 w2 w3 w4 w5" -> the item scoring highest along θ (argmax θ·f(w))
  sign  (cls, ACC)      "item: w"              -> "yes" if θ·f(w) > 0 else "no"

Both are what attention computes directly (θ as a query over items; θ·f(w) as an attention logit).
The "pretrained" model is a tiny T5 trained on a fresh (type, θ) every example with the task given
explicitly: P conditioning vectors, a linear map of θ, prepended like a prompt. Like a real PLM
it then does any task of the family when conditioned right, and prompt tuning has to find that
conditioning from K examples. Everything is deterministic from WorldConfig and cached.

    python world.py [--root cache/world]      # build (or reuse) and print the pretraining report
"""
import argparse
import hashlib
import itertools
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

import checkpoint
import data
import ipt

TYPES = ("pick", "sign")
METRIC = {"pick": "EM", "sign": "ACC"}
KIND = {"pick": "noncls", "sign": "cls"}


@dataclass(frozen=True)
class WorldConfig:
    version: int = 2                  # bump when the generator changes: it is part of the cache key
    seed: int = 0
    dim: int = 4                      # d*, the planted intrinsic dimension of θ
    items: int = 160                  # nonce words; sign tasks need 32 per class for train + dev
    pick_size: int = 5                # items shown per pick example
    tasks_per_type: int = 20          # world tasks of each type (train and unseen together)
    unseen_per_type: int = 5          # of those, held out of MSF (the random split's test side)
    test_examples: int = 100
    prompt_len: int = 4               # P of the conditioning the model is pretrained with
    d_model: int = 128
    layers: int = 3                   # encoder; the decoder has 2
    pretrain_steps: int = 5000          # unseen-θ accuracy, pick / sign: 0.89 / 0.95 at 4000, 0.92 / 0.96 at 5000
    pretrain_batch: int = 64
    pretrain_lr: float = 1e-3         # 2e-3 and 3e-3 trained worse (pick 0.56, 0.37 at 3000 steps)

    def key(self):
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def item_names(n):
    """Distinct pronounceable nonce words: bak, bal, … (consonant-vowel-consonant)."""
    words = ("".join(t) for t in itertools.product("bdfgklmnprstvz", "aeiou", "bdgklmnprstxz"))
    return list(itertools.islice(words, n))


class World:
    """Items, their features, and example generators for any (type, θ)."""

    def __init__(self, cfg):
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        self.items = item_names(cfg.items)
        self.features = torch.randn(cfg.items, cfg.dim, generator=g)            # f(w), (N_items, d*)
        self.thetas = torch.randn(len(TYPES) * cfg.tasks_per_type, cfg.dim, generator=g)
        self.tasks = [(f"{t}-{i:02d}", t, self.thetas[j * cfg.tasks_per_type + i])
                      for j, t in enumerate(TYPES) for i in range(cfg.tasks_per_type)]

    def example(self, kind, theta, g, items=None):
        """One (input, target) of task (kind, θ); `items` restricts which items may appear."""
        pool = torch.arange(self.cfg.items) if items is None else items
        if kind == "pick":
            shown = pool[torch.randperm(len(pool), generator=g)[:self.cfg.pick_size]]
            best = shown[(self.features[shown] @ theta).argmax()]
            return "pick: " + " ".join(self.items[i] for i in shown), self.items[best]
        w = pool[torch.randint(len(pool), (1,), generator=g)].item()
        return f"item: {self.items[w]}", "yes" if self.features[w] @ theta > 0 else "no"

    def k_shot(self, kind, theta, g, items, k):
        """CrossFit's K-shot train and dev sets, disjoint: 2k examples each for pick, k per label for sign."""
        if kind == "pick":
            both = [self.example(kind, theta, g, items) for _ in range(4 * k)]
            return both[:2 * k], both[2 * k:]
        scores = self.features[items] @ theta
        train, dev = [], []
        for label, side in (("yes", items[scores > 0]), ("no", items[scores <= 0])):
            chosen = side[torch.randperm(len(side), generator=g)[:2 * k]].tolist()
            train += [(f"item: {self.items[w]}", label) for w in chosen[:k]]
            dev += [(f"item: {self.items[w]}", label) for w in chosen[k:]]
        return train, dev

    def text(self):
        """Text covering the vocabulary, for the tokenizer."""
        return [f"pick: {w} item: {w} yes no" for w in self.items] * 4

    def whole_words(self):
        """Single pieces for the tokenizer: the items and the fixed words, each with its leading
        space ("▁"), so that a word is one token."""
        return ["▁" + w for w in self.items + ["pick", "item", "yes", "no"]]


class Conditioner(nn.Module):
    """The pretraining-time task description: θ -> P vectors (P, H), one linear map.
    The type needs no slot: "pick:" and "item:" inputs already say it. So every task's ideal
    prompt lies in one d*-dimensional linear subspace of R^{P·H}: the planted intrinsic dimension.
    (An earlier world also fed a one-hot type; its unseen-task E_rel kept rising past d_I = d*.)"""

    def __init__(self, dim, prompt_len, d_model):
        super().__init__()
        self.P, self.H = prompt_len, d_model
        self.linear = nn.Linear(dim, prompt_len * d_model)

    def forward(self, thetas):                                               # (B, d*) -> (B, P, H)
        return self.linear(thetas).view(-1, self.P, self.H)


def build(cfg=WorldConfig(), root=None):
    """Make (or reuse) the world under `root` (default cache/world-<config hash>) and return the folder."""
    root = Path(root or data.HERE / "cache" / f"world-{cfg.key()}")
    if (root / "world.json").is_file():
        return root
    world = World(cfg)
    tmp = root.with_name(root.name + ".tmp")                 # built aside, renamed when complete
    shutil.rmtree(tmp, ignore_errors=True)
    write_tasks(world, tmp)
    tokenizer = data.train_tokenizer(world.text(), len(world.items) + 64, tmp / "model", whole_words=world.whole_words())
    report = pretrain(world, tokenizer, tmp)
    (tmp / "world.json").write_text(json.dumps({"config": asdict(cfg), "pretraining": report,
                                                "thetas": {n: th.tolist() for n, _, th in world.tasks}}, indent=1))
    shutil.rmtree(root, ignore_errors=True)
    tmp.replace(root)
    return root


def write_tasks(world, root):
    """The world in CrossFit's layout: data/, tasks.txt and splits/ (random, cls, non-cls)."""
    cfg = world.cfg
    g = torch.Generator().manual_seed(cfg.seed + 1)
    lines = ["task\tmetric\ttype\tontology\tshots\trandom_split"]
    sections = {"train": [], "test": []}
    for name, kind, theta in world.tasks:
        test_items = torch.randperm(cfg.items, generator=g)                  # 40% of items only in test
        cut = int(0.4 * cfg.items)
        held, pool = test_items[:cut], test_items[cut:]
        test = [world.example(kind, theta, g, held) for _ in range(cfg.test_examples)]
        for seed in data.SEEDS:                                              # one test set for every seed
            train, dev = world.k_shot(kind, theta, torch.Generator().manual_seed(hash_seed(name, seed)), pool, 16)
            for split, examples in (("train", train), ("dev", dev), ("test", test)):
                write_file(data.task_file(root / "data", name, split, seed=seed), examples)
        side = "test" if int(name[-2:]) >= cfg.tasks_per_type - cfg.unseen_per_type else "train"
        sections[side].append(name)
        lines.append(f"{name}\t{METRIC[kind]}\t{KIND[kind]}\tworld/{kind}\t{'16/class' if kind == 'sign' else '32'}\t{side}")
    (root / "tasks.txt").write_text("\n".join(lines) + "\n")
    (root / "splits").mkdir()
    by_type = lambda side, kind: [n for n in sections[side] if n.startswith(kind)]
    split_files = {"random": {"train": sections["train"], "test": sections["test"]},
                   "cls": {"train": by_type("train", "sign"), "test_in": by_type("test", "sign"),
                           "test_out": by_type("test", "pick")},
                   "non-cls": {"train": by_type("train", "pick"), "test_in": by_type("test", "pick"),
                               "test_out": by_type("test", "sign")}}
    for split, secs in split_files.items():
        (root / "splits" / f"{split}.txt").write_text("".join(f"[{s}]\n" + "".join(t + "\n" for t in ts)
                                                              for s, ts in secs.items()))


def hash_seed(name, seed):
    return int(hashlib.sha1(f"{name}/{seed}".encode()).hexdigest()[:8], 16)


def write_file(path, examples):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x}\t{y}\n" for x, y in examples), encoding="utf-8")


def tiny_t5(vocab_size, d_model, layers):
    """A small T5 with 4 heads, `layers` encoder and 2 decoder layers, no dropout."""
    from transformers import T5Config, T5ForConditionalGeneration
    return T5ForConditionalGeneration(T5Config(
        vocab_size=vocab_size, d_model=d_model, d_kv=d_model // 4, d_ff=2 * d_model,
        num_layers=layers, num_decoder_layers=2, num_heads=4, dropout_rate=0.0,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1))


def sample_batch(world, tokenizer, g, n):
    """n examples of fresh random tasks -> (Batch, thetas (n, d*), kinds, (input, target) pairs)."""
    kinds = [TYPES[i] for i in torch.randint(len(TYPES), (n,), generator=g).tolist()]
    thetas = torch.randn(n, world.cfg.dim, generator=g)
    pairs = [world.example(k, th, g) for k, th in zip(kinds, thetas)]
    src = data.tokenize(tokenizer, [x for x, _ in pairs], 64)
    tgt = data.tokenize(tokenizer, [y for _, y in pairs], 16)
    return data.collate([(0, s, t) for s, t in zip(src, tgt)], tokenizer.pad_token_id), thetas, kinds, pairs


def pretrain(world, tokenizer, root):
    """Train T5 + conditioner on fresh tasks; save the T5 (HF format) and the conditioner."""
    cfg = world.cfg
    torch.manual_seed(cfg.seed)
    t5 = tiny_t5(len(tokenizer), cfg.d_model, cfg.layers)
    cond = Conditioner(cfg.dim, cfg.prompt_len, cfg.d_model)
    params = list(t5.parameters()) + list(cond.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.pretrain_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed + 2)
    started = time.time()
    bar = tqdm(range(cfg.pretrain_steps), desc="pretraining the world's T5", disable=None)
    for step in bar:
        for group in optimizer.param_groups:                                  # warm-up, then linear decay
            group["lr"] = cfg.pretrain_lr * min(1.0, (step + 1) / 200) * (1 - step / cfg.pretrain_steps)
        batch, thetas, kinds, _ = sample_batch(world, tokenizer, g, cfg.pretrain_batch)
        losses = ipt.token_losses(t5, cond(thetas), batch.input_ids, batch.attention_mask, batch.labels)
        loss = losses.sum() / (batch.labels != ipt.IGNORE).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    t5.eval()
    t5.save_pretrained(root / "model")
    checkpoint.save(root / "conditioner.safetensors", cond.state_dict())
    report = {"seconds": round(time.time() - started), "steps": cfg.pretrain_steps,
              **conditioned_accuracy(world, tokenizer, t5, cond)}
    print("pretrained:", json.dumps(report))
    return report


@torch.no_grad()
def conditioned_accuracy(world, tokenizer, t5, cond, n=1000):
    """Accuracy on unseen θ (fresh draws) with the true conditioning, per type."""
    g = torch.Generator().manual_seed(world.cfg.seed + 3)
    batch, thetas, kinds, pairs = sample_batch(world, tokenizer, g, n)
    ids = ipt.generate(t5, cond(thetas), batch.input_ids, batch.attention_mask, max_new_tokens=8)
    preds = [p.strip() for p in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return {f"accuracy_{t}": sum(p == y for p, (_, y), k in zip(preds, pairs, kinds) if k == t) / kinds.count(t)
            for t in TYPES}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="where to build it (default cache/world-<config hash>)")
    p.add_argument("--pretrain-steps", type=int, default=WorldConfig.pretrain_steps)
    args = p.parse_args(argv)
    root = build(WorldConfig(pretrain_steps=args.pretrain_steps), args.root)
    print(root, json.loads((root / "world.json").read_text())["pretraining"])


if __name__ == "__main__":
    main()
