"""
The offline world's own answer to Fig. 3: IST through the true subspace.

MSF has to find a kind's subspace from PT prompts; the world knows it, because its conditioner maps
θ linearly into prompts (pretraining.Conditioner). The oracle tunes d numbers z on the plane through the
mean μ of the kind's training θs spanned by their d leading principal directions U_d,

    prompt = cond(μ + z·U_d)                    z (d,), U_d (d, d*), prompt (P, H)

as IST tunes z through Proj_b: the task's K-shot train rows, Adam, the best dev score's test score.
Its curve over d is the knee a perfect MSF would show (d = d* reaches every θ); the true θ is its
ceiling. Next to Fig. 3 it tells whether a soft knee is the world's or the method's.

    python -m world.oracle                      # the world of make paper -> a table and <world>/oracle.json
    python -m world.oracle --world-seed 1 --steps 50
    python -m world.oracle --world pretrain_noise=0 --world pretrain_steps=5000 --world tasks_per_type=24   # world v7
    python -m world.oracle --prompts runs/paper/prompts-s100     # only: how much of PT's prompts is conditioning
"""
import argparse
import json
from pathlib import Path

from world import numerics

numerics.pin_if_main(__name__)           # before torch: the world's numbers pinned (world/numerics.py)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import AutoTokenizer, T5ForConditionalGeneration

import checkpoint
import cli
import data
import evaluate
import ipt
from world import pretraining, world

SPLIT = {"pick": "non-cls", "colour": "cls"}          # the split whose training tasks define a kind's plane


def plane(thetas, d):
    """The d-dimensional affine plane of best fit to thetas (K, d*): (μ (d*,), U_d (d, d*)),
    U_d's rows orthonormal, in order of the variance they explain."""
    mu = thetas.mean(0)
    return mu, torch.linalg.svd(thetas - mu, full_matrices=False)[2][:d]


class OraclePrompts(nn.Module):
    """One task's prompt, cond(μ + z·U_d): only z trains (zero: the plane's centre)."""

    def __init__(self, cond, kind, mu, basis):
        super().__init__()
        self.cond, self.kind = ipt.freeze(cond), kind
        self.register_buffer("mu", mu)
        self.register_buffer("basis", basis)
        self.z = nn.Parameter(torch.zeros(len(basis)))

    def forward(self, n):                                                # -> (n, P, H)
        return self.cond((self.mu + self.z @ self.basis)[None], [self.kind]).expand(n, -1, -1)


def rows(tokenizer, examples):
    """Examples -> (Batch of inputs and first references, references)."""
    return pretraining.encode(tokenizer, [(e.input, e.references[0]) for e in examples]), [list(e.references) for e in examples]


@torch.no_grad()
def score(t5, tokenizer, prompts, batch, refs, metric):
    ids = ipt.generate(t5, prompts(len(refs)), batch.input_ids, batch.attention_mask, max_new_tokens=8)
    return evaluate.score(metric, tokenizer.batch_decode(ids, skip_special_tokens=True), refs)


def tune(t5, tokenizer, prompts, train, dev, test, metric, steps, lr=0.1, eval_every=20):
    """Adam on z over the whole train set each step; -> the test score at the best dev score.
    train, dev, test: `rows` of the task's files. Not train.py's loop: that one tunes z through a
    Proj_b file, and this decoder is the world's conditioner, which only the world has; with d ≤ 3
    numbers, full batches make it exact and short."""
    train = train[0]
    optimizer = torch.optim.Adam([prompts.z], lr=lr)
    best = (-1.0, 0.0)
    for step in range(1, steps + 1):
        losses = ipt.token_losses(t5, prompts(len(train.labels)), train.input_ids, train.attention_mask, train.labels)
        loss = losses.sum() / (train.labels != ipt.IGNORE).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % eval_every == 0 or step == steps:
            on_dev = score(t5, tokenizer, prompts, *dev, metric)
            if on_dev > best[0]:
                best = (on_dev, score(t5, tokenizer, prompts, *test, metric))
    return best[1]


def run(root, steps):
    """Every held-out task (the cls and non-cls splits' T_test^in): the true θ's score and the
    oracle's at d = 1 … d*. -> {task: {"kind", "true", "1", …}}"""
    info, cfg, cond = load_world(root)
    t5 = ipt.freeze(T5ForConditionalGeneration.from_pretrained(root / "model"))
    tokenizer = AutoTokenizer.from_pretrained(root / "model")
    tasks = data.load_tasks(root / "tasks.txt")
    split_of = {k: data.load_split(root / "splits" / f"{SPLIT[k]}.txt", tasks) for k in world.TYPES}
    theta = {n: torch.tensor(t["theta"]) for n, t in info["tasks"].items()}
    planes = {k: [plane(torch.stack([theta[n] for n in split_of[k]["train"]]), d) for d in range(1, cfg.dim + 1)]
              for k in world.TYPES}
    jobs = [(n, k) for k in world.TYPES for n in split_of[k]["test_in"]]
    out = {}
    for name, kind in tqdm(jobs, desc="oracle IST", disable=None):
        split, metric = data.load_task_data(root / "data", name), tasks[name].metric
        train, dev, test = (rows(tokenizer, split[s]) for s in ("train", "dev", "test"))
        true = lambda n: cond(theta[name][None], [kind]).expand(n, -1, -1)
        out[name] = {"kind": kind, "true": score(t5, tokenizer, true, *test, metric)}
        for d, (mu, basis) in enumerate(planes[kind], 1):
            out[name][str(d)] = tune(t5, tokenizer, OraclePrompts(cond, kind, mu, basis), train, dev, test, metric, steps)
    return out


def load_world(root):
    """-> (world.json's contents, its WorldConfig, the pretrained Conditioner)"""
    info = json.loads((root / "world.json").read_text())
    cfg = world.WorldConfig(**info["config"])
    cond = pretraining.Conditioner(cfg.dim, cfg.prompt_len, cfg.d_model, world.TYPES)
    cond.load_state_dict(checkpoint.load(root / "conditioner.safetensors", "build the world again: python -m world.world")[0])
    return info, cfg, cond


def share_inside(cond, kind, prompts):
    """The share of PT prompts' spread across a kind's tasks (prompts (K, P, H)) that lies in the
    kind's conditioning directions, span of its map's columns: 1 for the true conditionings."""
    centred = (prompts - prompts.mean(0)).flatten(1)                                 # (K, P·H)
    basis = cond.basis(kind)                                                         # (P·H, d*)
    return float((centred @ basis).pow(2).sum() / centred.pow(2).sum())


def table(out):
    """Mean per kind: the score, and its ratio to the true θ's (E_rel against the ceiling)."""
    dims = [k for k in next(iter(out.values())) if k.isdigit()]                    # "1" … "d*"
    lines = ["| kind | true θ | " + " | ".join(f"d = {d}" for d in dims) + " |", "|---|---:|" + "---:|" * len(dims)]
    for kind in world.TYPES:
        got = [r for r in out.values() if r["kind"] == kind]
        mean = lambda key: sum(r[key] for r in got) / len(got)
        ratio = lambda d: f" ({mean(d) / mean('true'):.2f})" if mean("true") else ""
        lines.append(f"| {kind} ({len(got)}) | {mean('true'):.3f} | " + " | ".join(
            f"{mean(d):.3f}{ratio(d)}" for d in dims) + " |")
    return "\n".join(lines)


def report_prompts(root, store):
    """How much of a prompt store's spread, per kind, lies in the kind's conditioning directions.
    -> {kind: share}"""
    info, cfg, cond = load_world(root)
    shares = {}
    for kind in world.TYPES:
        names = [n for n, t in info["tasks"].items() if t["type"] == kind and (store / f"{n}.safetensors").is_file()]
        if len(names) < 2:
            print(f"{kind}: fewer than two PT prompts in {store}")
            continue
        prompts = torch.stack([checkpoint.load(store / f"{n}.safetensors")[0]["prompt"] for n in names])
        shares[kind] = share_inside(cond, kind, prompts)
        print(f"{kind}: {shares[kind]:.1%} of {len(names)} PT prompts' spread lies in the {cfg.dim} conditioning "
              f"directions (isotropic noise: {cfg.dim / (cfg.prompt_len * cfg.d_model):.1%})")
    return shares


@cli.command()
def main(argv=None):
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world-seed", type=int, default=0, help="which draw of the world (world/world.py --seed)")
    world.add_variant_argument(p)
    p.add_argument("--root", default="", help="a world folder (default: the draw's cache folder, built if needed)")
    p.add_argument("--steps", type=int, default=100, help="Adam steps on z per task and d")
    p.add_argument("--prompts", default="", help="a PT prompt store (e.g. runs/paper/prompts-s100): only say how "
                                                 "much of its prompts' spread lies in the conditioning directions")
    args = p.parse_args(argv)
    cfg = world.variant_config(p, args.world, args.world_seed)
    cli.at_least(p, args, {"--steps": 1, "--world-seed": 0})
    if args.prompts and not Path(args.prompts).is_dir():
        p.error(f"--prompts {args.prompts}: no such folder (PT writes it: make paper, or train.py --stage pt)")
    if args.root:
        cli.folder_option("--root", args.root, must_exist=False, writable=True)
    cli.checked()
    root = world.build(cfg, args.root or None)
    if args.prompts:
        return report_prompts(root, Path(args.prompts))
    out = run(root, args.steps)
    (root / "oracle.json").write_text(json.dumps(out, indent=1))
    print(table(out))
    return out


if __name__ == "__main__":
    main()
