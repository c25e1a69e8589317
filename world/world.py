"""
An offline task world with a planted intrinsic dimension, and a "pretrained" tiny T5 for it.

No pretrained T5 can be downloaded here, so the demo builds a world where the answers are known.
Items are nonce words, each with a hidden feature vector f(w) ∈ R^{d*}. A task is (type, θ) with
θ ∈ R^{d*}; both types ask which item lies nearest to θ, i.e. the highest score
θ·f(w) − ½‖f(w)‖² (one attention logit):

  pick    (non-cls, EM)   "w1 w2 w3 w4 w5" -> the item nearest to θ
  colour  (cls, ACC)      "w1 w2 w3 w4 w5" -> the colour of the item nearest to θ; every item
                                              has one of five colours, and an input shows one
                                              item of each

The input does not name the type: only the prompt (at pretraining, the conditioning) tells the
model which question it is asked. The answer depends on all of θ, its length included. (An
earlier world used argmax θ·f and sign θ·f: those ignore θ's length, so a task was only a
direction, one number fewer, and IST at d_I = d* − 1 did as well as at d*. A cls type answering
"first" or "second" of two items was not learnt at all: it needs positions, which T5's
cross-attention does not see. With two colours and any three items, a prompt that knew nothing
of θ still named the right colour three times in four: the random subspace reached 0.95 of PT;
with three colours, 0.8.)

The "pretrained" model (world/pretraining.py) is a tiny T5 trained on a fresh (type, θ) every example with the
task given explicitly: P conditioning vectors, a linear map of θ of the type's own, prepended like a prompt.
Like a real PLM it then does any task of the family when conditioned right, and prompt tuning has
to find that conditioning from K examples. What each experiment should show follows from that:

  - a kind's ideal prompts fill a d*-dimensional subspace: IST has its knee at d* on the cls and
    non-cls splits;
  - the two kinds' subspaces differ, so a subspace found on one kind fails the other (T_test^out):
    it cannot even tell the model which kind of answer to give;
  - the random split, trained on both, needs d* + 1: θ's d* numbers and which kind. Not the union
    2·d*: each kind reads only its own directions of the prompt, so one code z sets both kinds' θ
    at once, and one more direction chooses the kind;
  - a kind's tasks come in categories (clusters of θ), which Fig. 4's PCA should separate, and
    the two kinds lie apart.
(World v6 named the type in the input, "pick: w1 …": then the kind needed no direction of the
prompt, the random split's knee sat at d*, and Fig. 4 did not separate cls from non-cls.)
world/oracle.py measures the first point directly: IST through this conditioner on a d-dimensional plane
of θ, the knee a perfect MSF would find (on v7: colour 0.66 → 0.98, pick 0.77 → 0.96 of the true
θ's score at d = 2 → 3), and how much of PT's prompts lies in the conditioning directions. World
v7 pretrained without noise: PT's prompts then lay almost wholly outside those directions (2.4 %
for colour, 3.3 % for pick), MSF learnt its subspace from that noise, and the method's knees were
soft on one machine and gone on another. v8 pretrains with noise outside the kind's conditioning
directions (pretrain_noise), so the model reads a prompt only along them and PT lands nearer them
(3–12 %), and trains MSF on 32 tasks a kind instead of 16: the knees then hold on both machines
measured, at the cost of some of §4.3's effects (world/WORLD.md).

Everything is deterministic from WorldConfig and cached.

    python -m world.world [--root cache/world]      # build (or reuse) and print the pretraining report
    python -m world.world --rebuild [--ship]        # pretrain here instead of using world/shipped/ (and ship the result)
    python -m world.world --seed 1                  # another draw of the same world: which effects are robust
    python -m world.world --world pretrain_noise=0 --world pretrain_steps=5000 --world tasks_per_type=24   # v7
"""
import argparse
import hashlib
import itertools
import json
import platform
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from world import numerics

numerics.pin_if_main(__name__)           # before torch: the world's numbers pinned (world/numerics.py)
import torch  # noqa: E402

import checkpoint
import cli
import data
from world import pretraining, world_cache

TYPES = ("pick", "colour")
METRIC = {"pick": "EM", "colour": "ACC"}
KIND = {"pick": "noncls", "colour": "cls"}
SHOWN = {"pick": 5, "colour": 5}                # items in one input
COLOURS = ("red", "green", "blue", "white", "black")
CATEGORIES = ("A", "B")                         # θ clusters within each type, centred at ±c
# Fig. 5's nested subsets of the random split's 64 training tasks. 5 %: 3 tasks, fewer than the d* + 1 = 4
# directions the random split needs, so MSF cannot find its subspace from them (what Fig. 5 shows here)
FRACTIONS = (5, 25, 50, 75)


@dataclass(frozen=True)
class WorldConfig:
    version: int = 10                 # bump when the generator or a default changes: part of the cache key
                                      # (9: v8's construction, its pretrained model shipped in world/shipped/;
                                      # 10: v9 and a random_5 split, 3 training tasks: Fig. 5's low end)
    seed: int = 0
    dim: int = 3                      # d*, the planted intrinsic dimension of one kind
    items: int = 160                  # nonce words
    tasks_per_type: int = 40          # world tasks of each type (train and unseen together); 24 (16 to train
                                      # MSF on) left the knees to the MSF draw
    unseen_per_type: int = 8          # of those, held out of MSF (the random split's test side)
    test_examples: int = 100
    category_spread: float = 1.0      # θ = centre of its category (|centre| = 1) + spread · N(0, I): the
                                      # spread keeps every θ direction in play (centres 1.5, spread 0.8: IST
                                      # at d_I = 1 already did as well as at d*)
    prompt_len: int = 4               # P of the conditioning the model is pretrained with
    d_model: int = 128
    layers: int = 3                   # encoder; the decoder has 2
    pretrain_steps: int = 8000        # with the noise below; 5000 left the cls knee rising after d*
    pretrain_batch: int = 64
    pretrain_lr: float = 1e-3         # 2e-3 and 3e-3 trained worse (world v2: pick 0.56, 0.37 at 3000 steps)
    pretrain_noise: float = 1.0       # σ of noise added outside the kind's conditioning directions, × the
                                      # conditioning's rms: the model learns to read a prompt only along them,
                                      # so prompt tuning lands nearer them (0: world v7, world/WORLD.md)

    def key(self):
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    @classmethod
    def parse(cls, settings, **given):
        """WorldConfig from FIELD=VALUE strings (the command line's --world), each checked."""
        types = {f.name: f.type for f in fields(cls) if f.name != "version"}
        for item in settings:
            name, _, value = item.partition("=")
            if name not in types:
                raise ValueError(f"{item!r}: not a world setting; one of {', '.join(types)}")
            try:
                given[name] = types[name](value)
            except ValueError:
                raise ValueError(f"{item!r}: {name} takes a {types[name].__name__}") from None
        return cls(**given)


def item_names(n):
    """Distinct pronounceable nonce words: bak, bal, … (consonant-vowel-consonant)."""
    words = ("".join(t) for t in itertools.product("bdfgklmnprstvz", "aeiou", "bdgklmnprstxz"))
    return list(itertools.islice(words, n))


class World:
    types, categories = TYPES, CATEGORIES
    """Items, their features, the tasks, and example generators for any (type, θ)."""

    def __init__(self, cfg):
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        self.items = item_names(cfg.items)
        self.features = torch.randn(cfg.items, cfg.dim, generator=g)            # f(w), (N_items, d*)
        self.colour = torch.randint(len(COLOURS), (cfg.items,), generator=g)     # a fixed property of w
        centre = torch.randn(len(TYPES), cfg.dim, generator=g)
        centre = centre / centre.norm(dim=-1, keepdim=True)
        self.centres = torch.stack([centre, -centre], 1)                       # a type's categories: ±c, |c| = 1
        self.tasks = []                                                       # (name, type, category, θ)
        for j, kind in enumerate(TYPES):
            for i in range(cfg.tasks_per_type):
                c = i % len(CATEGORIES)
                theta = self.centres[j, c] + cfg.category_spread * torch.randn(cfg.dim, generator=g)
                self.tasks.append((f"{kind}-{i:02d}", kind, CATEGORIES[c], theta))

    def score(self, theta, items):
        """Nearness to θ: θ·f(w) − ½‖f(w)‖² (= −½‖f(w) − θ‖² up to a constant). items (n,) -> (n,)"""
        f = self.features[items]
        return f @ theta - 0.5 * (f * f).sum(-1)

    def example(self, kind, theta, g, items=None):
        """One (input, target) of task (kind, θ); `items` restricts which items may appear."""
        pool = torch.arange(self.cfg.items) if items is None else items
        if kind == "colour":                                  # one item of each colour, in random order
            shown = torch.stack([pool[self.colour[pool] == c][torch.randint(int((self.colour[pool] == c).sum()), (1,),
                                 generator=g)] for c in range(len(COLOURS))]).view(-1)
            shown = shown[torch.randperm(len(shown), generator=g)]
        else:
            shown = pool[torch.randperm(len(pool), generator=g)[:SHOWN[kind]]]
        best = shown[self.score(theta, shown).argmax()]
        answer = self.items[best] if kind == "pick" else COLOURS[self.colour[best]]
        return " ".join(self.items[i] for i in shown), answer          # v7: only the prompt tells the kind

    def k_shot(self, kind, theta, g, items, k):
        """CrossFit's K-shot train and dev sets, no input in both: 2k examples each for pick
        (non-cls), k per label for colour (cls)."""
        wanted = {None: 2 * k} if kind == "pick" else {c: k for c in COLOURS}
        sets, seen = [], set()
        for _ in range(2):
            need, examples = dict(wanted), []
            while any(need.values()):
                x, y = self.example(kind, theta, g, items)
                label = None if kind == "pick" else y
                if need[label] and x not in seen:
                    need[label] -= 1
                    seen.add(x)
                    examples.append((x, y))
            sets.append(examples)
        return sets

    def text(self):
        """Text covering the vocabulary, for the tokenizer."""
        return [f"pick: {w} colour: {w} {' '.join(COLOURS)}" for w in self.items] * 4

    def whole_words(self):
        """Single pieces for the tokenizer: the items and the fixed words, each with its leading
        space ("▁"), so that a word is one token."""
        return ["▁" + w for w in self.items + ["pick", "colour", *COLOURS]]


# The pretrained model of the default world ships with the repository (a few MB): pretraining is
# minutes on 2 cores, and CPUs of different kinds build bit-different models from the same seed
# (and with them different knees), so every machine starts from these weights. A variant, another
# draw, or --rebuild pretrains its own.
SHIPPED = Path(__file__).parent / "shipped"


def folder(cfg):
    """Where the world of `cfg` is cached: cache/world-<config hash>."""
    return data.HERE / "cache" / f"world-{cfg.key()}"


def shipped(cfg):
    """The repository's pretrained model of `cfg` (verified), or None when it ships none."""
    return world_cache.shipped(SHIPPED / f"world-{cfg.key()}")


def build(cfg=WorldConfig(), root=None, rebuild=False):
    """Make (or reuse) the world under `root` (default `folder(cfg)`) and return the folder: its
    tasks written here, its model the shipped one when there is one (unless `rebuild`), else
    pretrained here. One command builds at a time; the others wait and then read what it published
    (checkpoint.Building); a cached world is verified against its own world.json before use."""
    root = Path(root or folder(cfg))
    if (root / "world.json").is_file() and not rebuild:
        return world_cache.verified(root)
    if root.exists() and any(root.iterdir()) and not rebuild:    # never published so: a partial copy
        raise world_cache.WorldError(f"{root / 'world.json'}: missing from a world folder that holds files (a partial "
                                     f"copy): delete it (rm -r {root}) and run again, or python -m world.world --rebuild")
    source = None if rebuild else shipped(cfg)                    # damaged: said before any wait
    with checkpoint.Building(root) as building:
        if (root / "world.json").is_file() and not rebuild:  # built by another command while this one waited
            return world_cache.verified(root)
        tmp = building.private()
        world = World(cfg)
        write_tasks(world, tmp)
        if source:
            shutil.copytree(source / "model", tmp / "model")
            shutil.copy(source / "conditioner.safetensors", tmp)
            report = {**json.loads((source / "pretraining.json").read_text()), "weights": f"shipped ({source.name})"}
            print(f"the world's pretrained model: shipped in {source}")
        else:
            why = "--rebuild" if rebuild else "the repository ships none for this world"
            print(f"pretraining the world's model here ({why}): about 7 min on 2 cores", flush=True)
            tokenizer = data.train_tokenizer(world.text(), len(world.items) + 64, tmp / "model",
                                             whole_words=world.whole_words())
            report = {**pretraining.pretrain(world, tokenizer, tmp), "weights": f"pretrained here ({cpu()})"}
        written = world_cache.data_hash(tmp)
        if source and written != report["data"]:
            # The task files are a pure function of the config, written privately: only the generator can differ.
            print(f"warning: this checkout's world/world.py wrote other task files (data {written}) than those the shipped "
                  f"model was built beside ({report['data']}): world/world.py or torch's generator changed since it was "
                  "shipped; its numbers will differ from the README's (a maintainer: python -m world.world --rebuild --ship)")
        report |= {"data": written, "sha256": world_cache.model_hashes(tmp), "files": world_cache.file_hashes(tmp)}
        (tmp / "world.json").write_text(json.dumps({"config": asdict(cfg), "pretraining": report,
                                                    "tasks": {n: {"type": k, "category": c, "theta": th.tolist()}
                                                              for n, k, c, th in world.tasks}}, indent=1))
        building.publish()
    return world_cache.verified(root)


def ship(cfg, root):
    """Copy a built world's model into the repository (what `build` then uses on every machine)."""
    out = SHIPPED / f"world-{cfg.key()}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(root / "model", out / "model")
    shutil.copy(root / "conditioner.safetensors", out)
    report = json.loads((root / "world.json").read_text())["pretraining"]
    report = {k: v for k, v in report.items() if k not in ("weights", "files")} | {
        "built_on": cpu(), "data": world_cache.data_hash(root), "config": asdict(cfg), "sha256": world_cache.model_hashes(out)}
    (out / "pretraining.json").write_text(json.dumps(report, indent=1) + "\n")
    return out


def cpu():
    """The CPU's model name (bits of a pretrained model depend on it)."""
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")] if Path("/proc/cpuinfo").is_file() else []
    return names[0] if names else platform.processor() or platform.machine()


def write_tasks(world, root):
    """The world in CrossFit's layout: data/ (K = 16 and the 2K = 32 files), tasks.txt and
    splits/ (random, cls, non-cls, and random_5 … random_75 for the number-of-tasks ablation)."""
    cfg = world.cfg
    g = torch.Generator().manual_seed(cfg.seed + 1)
    lines = ["task\tmetric\ttype\tontology\tshots\trandom_split"]
    sections = {"train": [], "test": []}
    for name, kind, category, theta in world.tasks:
        test_items = torch.randperm(cfg.items, generator=g)                  # 40% of items only in test
        cut = int(0.4 * cfg.items)
        held, pool = test_items[:cut], test_items[cut:]
        test = [world.example(kind, theta, g, held) for _ in range(cfg.test_examples)]
        for seed in data.SEEDS:                                              # one test set for every seed
            for k in (16, 32):
                train, dev = world.k_shot(kind, theta, torch.Generator().manual_seed(hash_seed(f"{name}/{k}", seed)),
                                          pool, k)
                for split, examples in (("train", train), ("dev", dev), ("test", test)):
                    write_file(data.task_file(root / "data", name, split, k, seed), examples)
        side = "test" if int(name[-2:]) >= cfg.tasks_per_type - cfg.unseen_per_type else "train"
        sections[side].append(name)
        lines.append(f"{name}\t{METRIC[kind]}\t{KIND[kind]}\t{KIND[kind]}/{kind}-{category}\t"
                     f"{'16/class' if kind == 'colour' else '32'}\t{side}")
    (root / "tasks.txt").write_text("\n".join(lines) + "\n")
    by_type = lambda side, kind: [n for n in sections[side] if n.startswith(kind)]
    split_files = {"random": {"train": sections["train"], "test": sections["test"]},
                   "cls": {"train": by_type("train", "colour"), "test_in": by_type("test", "colour"),
                           "test_out": by_type("test", "pick")},
                   "non-cls": {"train": by_type("train", "pick"), "test_in": by_type("test", "pick"),
                               "test_out": by_type("test", "colour")}}
    shuffled = [sections["train"][i] for i in torch.randperm(len(sections["train"]), generator=g).tolist()]
    for pct in FRACTIONS:                                     # nested fractions of the training tasks
        split_files[f"random_{pct}"] = {"train": shuffled[:len(shuffled) * pct // 100], "test": sections["test"]}
    for split, secs in split_files.items():
        data.write_split(root / "splits" / f"{split}.txt", secs)


def hash_seed(name, seed):
    return int(hashlib.sha1(f"{name}/{seed}".encode()).hexdigest()[:8], 16)


def write_file(path, examples):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x}\t{y}\n" for x, y in examples), encoding="utf-8")


def add_variant_argument(p):
    """--world FIELD=VALUE (repeatable), for world/world.py, paper/experiments.py and world/oracle.py alike."""
    p.add_argument("--world", action="append", default=[], metavar="FIELD=VALUE",
                   help="a variant of the offline world: one WorldConfig field (repeatable), e.g. pretrain_noise=0")


def variant_config(p, settings, seed):
    """The WorldConfig of --world settings and a draw; a wrong setting is the parser's error."""
    try:
        return WorldConfig.parse(settings, seed=seed)
    except ValueError as e:
        p.error(f"--world {e}")


@cli.command()
def main(argv=None):
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", help="where to build it (default cache/world-<config hash>)")
    p.add_argument("--seed", type=int, default=WorldConfig.seed, help="another draw of items, θ and pretraining")
    p.add_argument("--rebuild", action="store_true", help="pretrain the model here even when the repository ships it")
    p.add_argument("--ship", action="store_true", help="copy the built model into world/shipped/ (maintainers: after "
                                                       "a change to the default world)")
    add_variant_argument(p)
    args = p.parse_args(argv)
    cfg = variant_config(p, args.world, args.seed)
    cli.at_least(p, args, {"--seed": 0})
    if args.ship and args.root:
        p.error("--ship copies the default folder's model into world/shipped/: leave out --root")
    if args.root:
        cli.folder_option("--root", args.root, must_exist=False, writable=True)
    cli.checked()
    print(numerics.state())
    root = build(cfg, args.root, args.rebuild)
    report = json.loads((root / "world.json").read_text())["pretraining"]
    print(root, {k: v for k, v in report.items() if k not in ("files", "sha256")})
    if args.ship:
        print("shipped:", ship(cfg, root))


if __name__ == "__main__":
    main()
