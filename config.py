"""
The one configuration of a train.py run: every option with its default and help (argparse is built
from the dataclass), each checked before any file or model is read; the stages' learning rates; and
which options only change how a run computes (a resumed run may change them).
"""
import argparse
import math
from dataclasses import dataclass, field, fields

import cli
import data
import stages
from cli import OptionError


def opt(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    stage: str = opt("pt", "pt | msf | ist | reconstruct | ft | did | untuned | mpt (see stages.py)")
    run: str = opt("runs/default", "run folder: one split and one model; stages write sub-folders")
    model: str = opt("google/t5-base-lm-adapt", "HF T5 name or path (Lester et al. prompt-tune the LM-adapted T5)")
    tokenizer: str = opt("", "tokenizer name or path; empty: the model's")
    data_dir: str = opt("../shared/data/crossfit", "folder in CrossFit's layout")
    tasks_file: str = opt(str(data.HERE / "tasks.txt"), "task table: name, metric, type")
    split: str = opt("random", "a name in splits/ or a split file")
    tasks_from: str = opt("", "comma-separated sections of the split to train; empty: the stage's "
                              "(pt, ft, did, untuned: all; msf, ist: train; reconstruct: all but train)")
    task: str = opt("", "train this one task only (overrides --tasks-from)")
    allow_missing: bool = opt(False, "train on the tasks present when some lack data (listed in results)")
    k: int = opt(16, "the k of <task>_<k>_<seed>_<split>.tsv")
    data_seed: int = opt(100, "which of CrossFit's samples (100, 13, 21, 42, 87); the authors' PT and MSF use 100")
    seed: int = opt(stages.DEFAULT_SEED, "initialisation and batch-order seed (the authors' 42); another seed "
                                         "writes to its own stage folders (…-seed<N>)")
    adapter: str = opt("prompt", "prompt: IPT's soft prompt (the paper) | lora: a LoRA per task in its place, "
                                 "stages pt, msf and ist (lora_stages.py; beyond the paper)")
    lora_rank: int = opt(8, "--adapter lora: r (PEFT's default)")
    lora_alpha: float = opt(8.0, "--adapter lora: α, the update scaled by α/r (PEFT's default)")
    lora_basis: int = opt(16, "--adapter lora: m, the rank of MSF's Proj_b's last layer (N × m · m × d'_I: "
                              "m·N numbers: at 16, under a tenth of SmolLM2-135M's and T5-base's parameters)")
    lora_targets: str = opt("", "--adapter lora: comma-separated names of the linear layers it adapts; empty: "
                                "the attention's q and v (T5: q,v; decoder-only: q_proj,v_proj)")
    prompt_len: int = opt(100, "P, soft prompt length (the authors' n and Lester's default)")
    prompt_init: str = opt("normal", "normal: N(0, 0.02²) as the authors | vocab: sampled vocabulary | "
                                     "labels: class labels, then vocabulary (Lester)")
    intrinsic_dim: int = opt(5, "d_I; the paper's headline numbers are at 5")
    ae_hidden: int = opt(0, "d'_I, Proj_b's hidden size; 0: d_model (the authors' 768 for BART-base)")
    alpha: float = opt(1.0, "α of Eq. MSF for our mean-reduced losses (≈ the authors' 200 on token sums)")
    subspace: str = opt("msf", "ist only: msf (the trained Proj_b) | random (untrained, the baseline) | pca (the "
                               "training tasks' PT prompts' mean and top principal directions: prompt_subspaces.py) | mpt "
                               "(P* ⊙ u vᵀ from the mpt stage, P + H numbers a task; --intrinsic-dim unused: prompt_subspaces.py); "
                               "--adapter lora also mean | delta-mean | delta-mean-r | delta-pca | hub | basis | fastfood "
                               "(lora_subspaces.py), not mpt")
    msf_seed: int = opt(stages.DEFAULT_SEED, "ist, reconstruct: the MSF run whose Proj_b they use, by its --seed "
                                             "(another draw of the subspace; writes …-msf<N> folders)")
    z_init: str = opt("normal", "ist only: normal (authors') | zeros | mean (of Proj(P_train))")
    init_from_ist: str = opt("", "pt only: an IST stage folder; start each prompt at Proj_b(z_best)")
    init_from_peft: str = opt("", "pt only: PEFT prompt-tuning adapters, <dir>/<task>/ (or one adapter with "
                                  "--task); start each prompt there")
    transfer: str = opt("", "pt only, SPoT (prompt_subspaces.py): start each prompt at the split's training tasks' mean PT "
                            "prompt (mean) or at its nearest training task's (nearest: by --similar-by's z)")
    similar_by: str = opt("", "with --transfer nearest: an IST stage folder (MSF subspace); each task's z there "
                              "against the training tasks' Proj(P) picks its nearest")
    transfer_from: str = opt("", "with --transfer: the folder of the training tasks' PT prompts it starts from; "
                                 "empty: --prompt-store's (where this PT run then writes its own)")
    prompt_store: str = opt("", "folder of PT prompts that pt writes and msf, reconstruct read (--adapter lora: "
                                "of PT LoRAs, as PEFT adapters); empty: <run>/prompts-s<data-seed>[-seed<seed>] "
                                "(loras-s…)")
    steps: int = opt(2000, "step budget per task (the authors' 100k is ~50 epochs a minute on K-shot data)")
    batch_size: int = opt(8, "rows per task per step (largest of the authors' grid 2/4/8)")
    lr: float = opt(0.0, "peak learning rate; 0: the stage's default (see STAGE_LR)")
    optimizer: str = opt("adamw", "adamw | adafactor (Lester et al.'s: lr 0.3, no relative step, no parameter scaling)")
    warmup: float = opt(0.06, "fraction of steps of linear warm-up, then linear decay (the authors' schedule)")
    clip: float = opt(1.0, "gradient-norm clip, per task where tasks own their tensors; 0: none")
    label_smoothing: float = opt(0.0, "the authors used 0.1")
    eval_every: int = opt(100, "steps between dev evaluations (and checkpoints)")
    patience: int = opt(0, "stop a task after this many evaluations without a better dev score; 0: never")
    max_input_len: int = opt(412, "input tokens kept, </s> included (the authors' 512 minus 100 prompt rows)")
    max_target_len: int = opt(64, "target tokens kept, and the generation limit (the authors' 64)")
    eval: str = opt("generate", "generate: decode answers (CrossFit's) | rank: cls tasks pick the most likely "
                                "class (rank classification: no decoding), the others still generate | both: select "
                                "and score by generation, and score the test sets by rank too (results.tsv's test_rank)")
    num_beams: int = opt(1, "beams for dev/test generation (the authors' 4; greedy is ~4x cheaper)")
    decoder: str = opt("own", "greedy generation by decode.py's cached loop (own: HF generate's tokens, fewer kernel "
                              "launches and waits) or HF generate (hf); beams always use HF generate")
    eval_batch_size: int = opt(64, "rows per generation batch")
    max_test: int = opt(0, "score at most this many test examples per task (first ones); 0: all")
    keep_checkpoints: bool = opt(False, "keep checkpoint.safetensors (and .prev) once results.tsv is written; by "
                                        "default deleted then: a finished fine-tuning of T5-base would keep ~8 GB a task")
    tokens_per_forward: int = opt(0, "forward a step's rows in length-sorted passes of at most this many padded x+y "
                                     "tokens (same gradient, less padding and memory); 0: one pass")
    task_tag: bool = opt(False, "prepend ' [task] ' to inputs as the authors did (leaks task identity)")
    device: str = opt("", "cpu | cuda | cuda:N; empty: cuda when present")
    precision: str = opt("auto", "auto: bf16 autocast on CUDA, fp32 on a CPU | bf16: autocast on any device "
                                 "(CPUs with AMX gain) | fp32")

    def __post_init__(self):
        """Every option is checked here, before any file or model is read; each message names
        the flag and what it accepts."""
        flag = lambda name: "--" + name.replace("_", "-")
        choices = {"stage": tuple(STAGE_LR), "optimizer": ("adamw", "adafactor"), "eval": ("generate", "rank", "both"), "precision": ("auto", "bf16", "fp32"), "subspace": ("msf", "random", "pca", "mpt", *LORA_ONLY),
                   "adapter": ("prompt", "lora"), "prompt_init": ("normal", "vocab", "labels"),
                   "z_init": ("normal", "zeros", "mean"), "transfer": ("", "mean", "nearest"),
                   "decoder": ("own", "hf")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise OptionError(f"unknown {flag(name)} {getattr(self, name)!r}: choose {', '.join(allowed)}")
        at_least = {"k": 1, "steps": 1, "batch_size": 1, "eval_every": 1, "prompt_len": 1, "intrinsic_dim": 1,
                    "max_input_len": 1, "max_target_len": 1, "num_beams": 1, "eval_batch_size": 1,
                    "ae_hidden": 0, "patience": 0, "max_test": 0, "tokens_per_forward": 0, "seed": 0, "msf_seed": 0,
                    "data_seed": 0, "lr": 0, "alpha": 0, "clip": 0, "lora_rank": 1,
                    "lora_basis": 1}
        for name, low in at_least.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= low):
                raise OptionError(f"{flag(name)} must be a number ≥ {low}, got {value}")
        for name in ("warmup", "label_smoothing"):
            if not 0 <= getattr(self, name) < 1:
                raise OptionError(f"{flag(name)} must be in [0, 1), got {getattr(self, name)}")
        self.check_lora()
        if self.stage == "reconstruct" and self.subspace != "msf":
            raise OptionError(f"--stage reconstruct applies the MSF autoencoder; --subspace {self.subspace} has none")
        if self.msf_seed != stages.DEFAULT_SEED and (self.stage not in ("ist", "reconstruct") or self.subspace != "msf"):
            raise OptionError("--msf-seed chooses the MSF subspace that --stage ist and reconstruct use")
        if (self.init_from_ist or self.init_from_peft) and self.stage != "pt":
            raise OptionError("--init-from-ist and --init-from-peft belong to --stage pt (they start prompt tuning)")
        if sum(map(bool, (self.init_from_ist, self.init_from_peft, self.transfer))) > 1:
            raise OptionError("give one of --init-from-ist, --init-from-peft and --transfer")
        if self.transfer_from and not self.transfer:
            raise OptionError("--transfer-from says where --transfer reads its prompts: give --transfer too")
        if self.transfer and self.stage != "pt":
            raise OptionError("--transfer belongs to --stage pt (it starts prompt tuning)")
        if bool(self.similar_by) != (self.transfer == "nearest"):
            raise OptionError("--transfer nearest needs --similar-by (an IST stage folder), and --similar-by needs it")


    def check_lora(self):
        if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise OptionError(f"--lora-alpha must be a number > 0, got {self.lora_alpha}")
        names = self.lora_targets.split(",") if self.lora_targets else []
        if any(not n.isidentifier() for n in names):
            raise OptionError(f"--lora-targets takes comma-separated layer names (q,v), got {self.lora_targets!r}")
        if self.adapter == "prompt":
            if self.subspace in LORA_ONLY:
                raise OptionError(f"--subspace {self.subspace} is a LoRA subspace: give --adapter lora")
            return
        if self.stage not in LORA_LR:
            raise OptionError(f"--adapter lora trains --stage {', '.join(LORA_LR)}, not {self.stage}")
        if self.subspace == "mpt" or self.z_init == "mean" or self.init_from_ist or self.transfer:
            raise OptionError("--adapter lora has no --subspace mpt, --z-init mean, --init-from-ist or --transfer "
                              "(prompt options)")


# Adam step sizes: Lester et al. tune prompts at 0.3; full fine-tuning uses the usual T5 rate.
# msf and ist were measured on the offline world (unseen-task E_rel at d_I = d*): MSF at 1e-3 for
# 400 steps / 3e-3 for 200 / 1e-2 for 200 gave 0.89 / 0.89 / 0.80 (faster fits the seen tasks'
# prompts too closely); IST at 0.03 / 0.1 / 0.3 gave 0.77 / 0.90 / 0.89. DID (one world task, d = 3,
# 150 steps): train loss 1.72 -> 1.70 / 1.49 / 1.52 at 0.01 / 0.1 / 1, diverging at 10.
STAGE_LR = {"pt": 0.3, "msf": 3e-3, "ist": 0.1, "reconstruct": 0.0, "ft": 1e-4, "did": 0.1, "untuned": 0.0,
            "mpt": 0.3}                                        # MPT's P*, u, v: prompts, at PT's rate

# LoRA (lora_stages.py): measured on the offline world (see world/WORLD.md, LoRA)
LORA_LR = {"pt": 3e-3, "msf": 3e-3, "ist": 0.1}
LORA_ONLY = ("mean", "delta-mean", "delta-mean-r", "delta-pca", "hub", "basis", "fastfood")

# Settings that change how a run computes, not what it computes: a resumed run may change them.
OPERATIONAL = {"device", "decoder", "eval_batch_size", "tokens_per_forward", "allow_missing", "keep_checkpoints"}


def parse_args(argv=None, description=__doc__):
    """-> Config from the command line: one flag per field, its help and default from the field."""
    p = cli.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        helptext = f"{f.metadata['help']} (default: {f.default!r})"
        if isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=helptext)
        else:
            p.add_argument(flag, type=type(f.default), default=f.default, help=helptext)
    return Config(**vars(p.parse_args(argv)))
