"""
The stages of IPT and its baselines: for each, what trains, what the loss is, and what is saved.

  pt    §3.1  a soft prompt per task; the PLM frozen              -> prompts-s<seed>/<task>.safetensors
  msf   §3.2  the autoencoder only, over the training tasks' PT prompts -> autoencoder.safetensors
  ist   §3.2  z only (d_I numbers a task); Proj_b and the PLM frozen -> z.safetensors
        --subspace random: the same with an untrained Proj_b (the paper's random-subspace baseline)
        --subspace pca: through P̄ + U z, the training prompts' linear span (prompt_subspaces.py; beyond the paper)
        --subspace mpt: through P* ⊙ (u vᵀ), z = [u; v], P* from the mpt stage (prompt_subspaces.py; beyond the paper)
  mpt         MPT's source: a shared P* and each training task's u, v  -> shared_prompt.safetensors
  reconstruct §4.1  nothing trains: the MSF autoencoder applied to tasks' own PT prompts, scored
        (T_test(MSF) on held-out tasks: how well it reconstructs prompts it never saw)
  ft          full fine-tuning, the baseline of E_rel^FT (one task at a time: each needs its own PLM)
  did         the intrinsic-dimension baseline (did.py): d numbers projected onto every PLM weight
              by Fastfood; one task at a time, like ft
  untuned     the reference P = 0: the frozen PLM with no prompt, scored; nothing trains
  pt --init-from-ist DIR   §4.3 stage two: PT started from Proj_b(z) of an IST run
  pt --init-from-peft DIR  PT started from PEFT prompt-tuning adapters (DIR/<task>/, or DIR with --task)
  pt --transfer mean|nearest   SPoT: PT started from the training tasks' mean prompt, or from the
              prompt of the nearest training task (prompt_subspaces.py; beyond the paper)

What a stage reads from earlier ones (PT prompts, the autoencoder, z) is loaded by `read_inputs`
before the PLM, so a missing or damaged file is reported in a second.
"""
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch

import checkpoint
import data
import did
import ipt
import prompt_subspaces
from data import UserError


DEFAULT_SEED = 42


def stage_dir(cfg):
    """runs/<run>/<stage>-…: one folder per stage, subspace, task selection and (when not the
    default 42) initialisation seed and MSF draw, so that repeated runs sit side by side; a LoRA
    stage's (lora_stages.py) the same, prefixed lora-."""
    folder = prompt_stage_dir(cfg)
    return folder.with_name("lora-" + folder.name) if cfg.adapter == "lora" else folder


def prompt_stage_dir(cfg):
    run = Path(cfg.run)
    selection = cfg.task or (cfg.tasks_from.replace(",", "+") if cfg.tasks_from else "default")
    seed = f"-seed{cfg.seed}" if cfg.seed != DEFAULT_SEED else ""
    draw = f"-msf{cfg.msf_seed}" if cfg.msf_seed != DEFAULT_SEED else ""
    if cfg.stage in ("msf", "mpt"):
        return run / (f"msf-d{cfg.intrinsic_dim}{seed}" if cfg.stage == "msf" else f"mpt{seed}")
    if cfg.stage == "did":
        return run / f"did-d{cfg.intrinsic_dim}-s{cfg.data_seed}-{selection}{seed}"
    if cfg.stage == "reconstruct":
        return run / f"reconstruct-d{cfg.intrinsic_dim}-s{cfg.data_seed}-{selection}{seed}{draw}"
    if cfg.stage == "ist" and cfg.subspace == "mpt":                  # P + H numbers a task, whatever d_I
        return run / f"ist-mpt-s{cfg.data_seed}-{selection}{seed}"
    if cfg.stage == "ist":
        kind = "ist" if cfg.subspace == "msf" else f"ist-{cfg.subspace}"
        return run / f"{kind}-d{cfg.intrinsic_dim}-s{cfg.data_seed}-{selection}{seed}{draw}"
    if cfg.transfer:
        return run / f"pt-transfer-{cfg.transfer}-s{cfg.data_seed}-{selection}{seed}"
    if cfg.init_from_ist or cfg.init_from_peft:
        source = Path(cfg.init_from_ist or cfg.init_from_peft).name
        return run / f"pt-from-{source}{'' if source.endswith(seed) else seed}"
    return run / f"{cfg.stage}-s{cfg.data_seed}-{selection}{seed}"


def prompt_store(cfg):
    """PT writes each task's best prompt here; MSF and reconstruct read them from it. Another
    initialisation seed or --transfer start gets its own store, so that repeated runs never
    overwrite MSF's inputs (or each other's)."""
    seed = f"-seed{cfg.seed}" if cfg.seed != DEFAULT_SEED else ""
    start = f"-transfer-{cfg.transfer}" if cfg.transfer else ""
    return Path(cfg.prompt_store or Path(cfg.run) / f"prompts-s{cfg.data_seed}{start}{seed}")


def load_prompts(store, names):
    """The stored PT prompts of `names` -> (K, P, H)."""
    remedy = "prompt-tune that task again (make pt, or python train.py --stage pt --task <task>)"
    prompts = []
    for n in names:
        path = Path(store) / f"{n}.safetensors"
        tensors, _ = checkpoint.load(path, remedy)
        if "prompt" not in tensors:
            raise checkpoint.CheckpointError(f"{path} holds no 'prompt' tensor: {remedy}")
        prompts.append(tensors["prompt"])
    shapes = sorted({tuple(p.shape) for p in prompts})
    if len(shapes) > 1:
        raise UserError(f"the prompts in {store} have different shapes {shapes}: they come from different "
                        "--prompt-len or models; prompt-tune them again with one setting")
    return torch.stack(prompts)


def load_autoencoder(path):
    tensors, meta = checkpoint.load(path, f"train the subspace again: delete {Path(path).parent} and re-run MSF")
    ae = ipt.PromptAutoencoder(meta["prompt_len"], meta["d_model"], meta["intrinsic_dim"], meta["hidden"])
    checkpoint.fit(ae, tensors, path)
    return ae, meta


def load_ist_solution(ist_dir, names):
    """Best z of each task of an IST run, and its autoencoder -> (z (K, d_I), autoencoder)."""
    path = Path(ist_dir) / "z.safetensors"
    if not path.is_file():
        raise UserError(f"no finished IST run at {ist_dir} (no z.safetensors): run its IST stage again "
                        "(python train.py --stage ist …) or give --init-from-ist a finished one")
    z, meta = checkpoint.load(path, f"run that IST stage again: delete {ist_dir} and re-run it")
    if meta["autoencoder"] in ("random", "pca", "mpt"):
        raise UserError(f"{ist_dir}: stage two and --transfer nearest read an IST run in the MSF subspace, not "
                        f"the {meta['autoencoder']} one")
    missing = [n for n in names if n not in z]
    if missing:
        raise UserError(f"{ist_dir} has no z for {', '.join(missing)}")
    ae, _ = load_autoencoder(meta["autoencoder"])
    return torch.stack([z[n] for n in names]), ae


def read_inputs(cfg, names, model_config):
    """What the stage reads from earlier stages, loaded and checked against the run's shapes
    (P × H) before the PLM is. model_config: a callable that reads the model's config (only once the
    files are found). -> keyword arguments of the stage's setup."""
    d_model = lambda: model_config().hidden_size
    inputs = {}
    if cfg.stage in ("msf", "reconstruct"):
        store = prompt_store(cfg)
        missing = [n for n in names if not (store / f"{n}.safetensors").is_file()]
        if missing:
            raise UserError(f"{cfg.stage} needs the PT prompt of every task it reads; {len(missing)} missing in "
                            f"{store}: {', '.join(missing)}\nMake them first: python train.py --stage pt "
                            f"--run {cfg.run} --split {cfg.split} (or make pt)")
        inputs["pt_prompts"] = load_prompts(store, names)
        check_shape(f"the PT prompts in {store}", inputs["pt_prompts"].shape[1:], cfg, d_model)
    if cfg.stage in ("ist", "reconstruct") and cfg.subspace == "msf":
        # where the MSF run of that seed wrote its autoencoder: msf-d<D>[-seed<N>]
        msf = stage_dir(replace(cfg, stage="msf", seed=cfg.msf_seed, msf_seed=DEFAULT_SEED))
        if not (msf / "autoencoder.safetensors").is_file():
            if cfg.msf_seed != DEFAULT_SEED:           # another draw of the subspace, from the same PT prompts
                raise UserError(f"no MSF subspace at {msf}: make it with python train.py --stage msf --intrinsic-dim "
                                f"{cfg.intrinsic_dim} --run {cfg.run} --seed {cfg.msf_seed} --prompt-store "
                                f"{prompt_store(replace(cfg, seed=DEFAULT_SEED))}")
            raise UserError(f"no MSF subspace at {msf}: make it with `make msf DIM={cfg.intrinsic_dim} RUN={cfg.run}` "
                            f"(python train.py --stage msf --intrinsic-dim {cfg.intrinsic_dim} --run {cfg.run})")
        ae, meta = load_autoencoder(msf / "autoencoder.safetensors")
        check_shape(str(msf), (meta["prompt_len"], meta["d_model"]), cfg, d_model)
        inputs["autoencoder"] = ae
        if cfg.stage == "ist":
            inputs["source"] = str(msf / "autoencoder.safetensors")
            if cfg.z_init == "mean":
                with torch.no_grad():
                    inputs["codes"] = ae.encode(load_prompts(meta["prompts"], meta["tasks"]))
    if cfg.stage == "ist" and cfg.subspace == "pca":             # the split's training tasks' PT prompts
        _, prompts = training_prompts(cfg, d_model, "the linear subspace is the span of the training tasks' PT prompts")
        try:
            inputs["autoencoder"] = prompt_subspaces.LinearSubspace(prompts, cfg.intrinsic_dim)
        except ValueError as e:
            raise UserError(str(e)) from None
        inputs["source"] = "pca"
    if cfg.stage == "mpt":                                       # P* starts at the training prompts' mean
        _, prompts = training_prompts(cfg, d_model, "MPT's shared prompt starts at the training tasks' mean PT prompt")
        inputs["shared"] = prompts.mean(0)
    if cfg.stage == "ist" and cfg.subspace == "mpt":
        source = stage_dir(replace(cfg, stage="mpt", subspace="msf", tasks_from="", task="", seed=DEFAULT_SEED))
        path = source / "shared_prompt.safetensors"
        if not path.is_file():
            raise UserError(f"no MPT shared prompt at {path}: make it with python train.py --stage mpt --run {cfg.run} "
                            f"--split {cfg.split}")
        shared, _ = checkpoint.load(path, f"train it again: delete {source} and re-run the mpt stage")
        check_shape(str(source), shared["shared"].shape, cfg, d_model)
        inputs["autoencoder"], inputs["source"] = prompt_subspaces.RankOne(shared["shared"]), "mpt"
    if cfg.stage == "pt" and cfg.transfer:
        # a PT run writes its own prompts to its prompt store: it reads the sources from another folder
        train, prompts = training_prompts(cfg, d_model, "transfer starts from the training tasks' PT prompts",
                                          cfg.transfer_from)
        if cfg.transfer == "mean":
            inputs["init"] = prompt_subspaces.mean_start(prompts, len(names))
            inputs["sources"] = [(f"mean of {len(train)} training prompts", "")] * len(names)
        else:
            z, ae = load_ist_solution(cfg.similar_by, names)
            with torch.no_grad():
                index, cosine = prompt_subspaces.nearest(z, ae.encode(prompts), torch.tensor([[t == n for t in train] for n in names]))
            inputs["init"] = prompts[index]
            inputs["sources"] = [(train[i], f"{c:.4f}") for i, c in zip(index.tolist(), cosine.tolist())]
    if cfg.stage == "pt" and cfg.init_from_ist:
        z, ae = load_ist_solution(cfg.init_from_ist, names)
        check_shape(cfg.init_from_ist, (ae.P, ae.H), cfg, d_model)
        with torch.no_grad():
            inputs["init"] = ae.decode(z)                     # (K, P, H) = Proj_b(z)
    if cfg.stage == "pt" and cfg.init_from_peft:
        inputs["init"] = torch.stack([checkpoint.read_peft(peft_folder(cfg.init_from_peft, n)) for n in names])
        check_shape(cfg.init_from_peft, inputs["init"].shape[1:], cfg, d_model)
    return inputs


def training_prompts(cfg, d_model, why, store=None):
    """The PT prompts of the split's training tasks, from `store` (default the prompt store)
    -> (names, (K, P, H))."""
    train = data.load_split(cfg.split, data.load_tasks(cfg.tasks_file))["train"]
    store = Path(store or prompt_store(cfg))
    missing = [n for n in train if not (store / f"{n}.safetensors").is_file()]
    if missing:
        raise UserError(f"{why}; {len(missing)} missing in {store}: {', '.join(missing)}\nMake them first (make pt)")
    prompts = load_prompts(store, train)
    check_shape(f"the PT prompts in {store}", prompts.shape[1:], cfg, d_model)
    return train, prompts


def peft_folder(root, task):
    """A task's adapter: root/<task>/, or root itself when it is one adapter (with --task)."""
    root = Path(root)
    return root if (root / "adapter_config.json").is_file() else root / task


def check_shape(what, shape, cfg, d_model):
    H = d_model()
    if tuple(shape) != (cfg.prompt_len, H):
        raise UserError(f"{what} was trained for prompts {shape[0]}×{shape[1]}, "
                        f"this run has {cfg.prompt_len}×{H} (--prompt-len × the model's d_model)")


@dataclass
class Stage:
    module: torch.nn.Module            # owns every trainable tensor of the stage
    prompts: object                    # task_idx (B,) -> prompts (B, P, H), or None (ft)
    groups: list                       # [(task indices, parameter names)] selected and stopped together
    # (task_lm [K] of a part of the step, whether this part adds the step's once-only terms) -> the
    # loss to backpropagate; the parts' losses sum to the stage's objective (Eq. PT, Eq. MSF)
    objective: object = lambda task_lm, once: ipt.multitask_objective(task_lm)
    artifact: object = None            # callable: out dir, best module state -> writes what later stages read
    score_start: bool = False          # evaluate the given start (step 0) and keep it if no step beats it
    monitor: object = None             # callable -> {name: value} over the steps since the last evaluation, logged


def per_task_groups(names, prefix):
    return [([k], [f"{prefix}.{k}"]) for k in range(len(names))]


def setup_pt(cfg, plm, tokenizer, names, prepared, init=None, sources=None):
    """PT: K soft prompts train; loss = Σ_k L_LM(task k); saves each task's best prompt.
    init (K, P, H): given starting prompts (§4.3 stage two's Proj_b(z), PEFT adapters, or --transfer's),
    scored before the first step: its dev score at step 0 is where the run starts. sources: where
    --transfer took each task's start from (written to transfer.tsv)."""
    given = init is not None
    emb, H = plm.get_input_embeddings().weight.detach().cpu(), plm.config.hidden_size
    gs = [data.task_generator(cfg.seed, n) for n in names]
    if init is None and cfg.prompt_init == "vocab":
        init = torch.stack([ipt.init_sampled_vocab(emb, cfg.prompt_len, g) for g in gs])
    elif init is None and cfg.prompt_init == "labels":
        init = torch.stack([ipt.init_class_labels(emb, class_labels(p["train"]), cfg.prompt_len, g)
                            for p, g in zip(prepared, gs)])
    elif init is None:
        init = torch.stack([ipt.init_normal(cfg.prompt_len, H, g) for g in gs])
    module = ipt.SoftPrompts(init.detach())

    def artifact(out, state):
        for k, name in enumerate(names):
            checkpoint.save(prompt_store(cfg) / f"{name}.safetensors",
                            {"prompt": state[f"prompts.{k}"]}, task=name, source=str(out))
        if sources:
            checkpoint.write_text(out / "transfer.tsv", "task\tstarted from\tcosine\n" + "".join(
                f"{n}\t{src}\t{cos}\n" for n, (src, cos) in zip(names, sources)))
    return Stage(module, module, per_task_groups(names, "prompts"), artifact=artifact, score_start=given)


def class_labels(train_rows):
    """Distinct target token ids (without </s>) in a task's training rows, first seen first."""
    return [list(t[:-1]) or list(t) for t in dict.fromkeys(tuple(tgt) for _, tgt in train_rows)]


def setup_msf(cfg, plm, tokenizer, names, prepared, pt_prompts):
    """MSF: only the autoencoder trains; loss = mean_k L_LM(P̂_k) + α·‖P̂ − P‖²; saves it."""
    torch.manual_seed(cfg.seed)
    ae = ipt.PromptAutoencoder(pt_prompts.size(1), pt_prompts.size(2), cfg.intrinsic_dim, cfg.ae_hidden or None)
    module = ipt.ReconstructedPrompts(ae, pt_prompts)
    store = prompt_store(cfg)

    def artifact(out, state):
        checkpoint.save(out / "autoencoder.safetensors", {k.removeprefix("autoencoder."): v for k, v in state.items()},
                        prompt_len=ae.P, d_model=ae.H, intrinsic_dim=cfg.intrinsic_dim,
                        hidden=ae.proj_b[0].out_features, tasks=names, prompts=str(store))
    every = torch.arange(len(names))               # one group: every task in every step, until all stop
    objective, monitor = msf_terms(cfg, lambda: module.reconstruction_error(every))
    return Stage(module, module, [(every.tolist(), [n for n, _ in module.named_parameters()])],
                 objective=objective, artifact=artifact, monitor=monitor)


def msf_terms(cfg, reconstruction_error):
    """Eq. MSF as a stage's objective, and its monitor: the mean reconstruction error of the steps since
    the last evaluation (the log's loss less α times it is the LM loss)."""
    seen = []

    def objective(task_lm, once):
        error = reconstruction_error() if once else 0.0
        if once:
            seen.append(error.detach())
        return ipt.msf_objective(task_lm, error, cfg.alpha)

    def monitor():
        value = float(torch.stack(seen).double().mean()) if seen else math.nan
        seen.clear()
        return {"reconstruction": value}
    return objective, monitor


def setup_ist(cfg, plm, tokenizer, names, prepared, autoencoder=None, codes=None, source="random"):
    """IST: only z (d_I numbers a task) trains; Proj_b frozen; loss = Σ_k L_LM(Proj_b(z_k)); saves z.
    Without an autoencoder: an untrained Proj_b of the same shape, the random-subspace baseline."""
    if autoencoder is None:
        torch.manual_seed(cfg.seed)
        autoencoder = ipt.PromptAutoencoder(cfg.prompt_len, plm.config.hidden_size, cfg.intrinsic_dim,
                                            cfg.ae_hidden or None)
    if hasattr(autoencoder, "start"):                   # a subspace's own start point (MPT: u = v = 1, P* itself)
        z = autoencoder.start(len(names))
    else:
        z = torch.stack([ipt.init_z(cfg.z_init, 1, cfg.intrinsic_dim, data.task_generator(cfg.seed, n), codes)[0]
                         for n in names])
    module = ipt.IntrinsicPrompts(autoencoder, z)

    def artifact(out, state):
        checkpoint.save(out / "z.safetensors", {name: state[f"z.{k}"] for k, name in enumerate(names)},
                        autoencoder=source, seed=cfg.seed)
    return Stage(module, module, per_task_groups(names, "z"), artifact=artifact)


def setup_mpt(cfg, plm, tokenizer, names, prepared, shared):
    """MPT's source (prompt_subspaces.py): P* and each task's u, v train; loss = Σ_k L_LM(P* ⊙ u_k v_kᵀ); saves P*.
    P* is shared, so the tasks are selected and stopped together, by their mean dev score (as MSF)."""
    module = prompt_subspaces.MultitaskPrompts(shared, len(names))

    def artifact(out, state):
        checkpoint.save(out / "shared_prompt.safetensors", {"shared": state["autoencoder.shared"]}, tasks=names)
    every = list(range(len(names)))
    return Stage(module, module, [(every, [n for n, _ in module.named_parameters()])], artifact=artifact)


def setup_reconstruct(cfg, plm, tokenizer, names, prepared, pt_prompts, autoencoder):
    """T_test(MSF): each task's own PT prompt through the frozen autoencoder; nothing trains."""
    module = ipt.ReconstructedPrompts(ipt.freeze(autoencoder), pt_prompts)
    return Stage(module, module, [([k], []) for k in range(len(names))])


def setup_untuned(cfg, plm, tokenizer, names, prepared):
    """P = 0 (reference): the frozen PLM with no prompt at all; nothing trains, scored as it is."""
    return Stage(torch.nn.Module(), lambda task_idx: None, [([k], []) for k in range(len(names))])


def setup_ft(cfg, plm, tokenizer, names, prepared):
    """FT (baseline): every PLM weight trains on one task; loss = L_LM; nothing beyond the checkpoint."""
    plm.requires_grad_(True)
    return Stage(plm, lambda task_idx: None, [([0], [n for n, _ in plm.named_parameters()])])


def setup_did(cfg, plm, tokenizer, names, prepared):
    """DID (baseline): z (d_I numbers) trains; every PLM weight is θ_0 + P z; loss = L_LM."""
    module = did.IntrinsicWeights(plm, cfg.intrinsic_dim, cfg.seed)
    return Stage(module, lambda task_idx: None, [([0], ["z"])])


SETUPS = {"pt": setup_pt, "msf": setup_msf, "mpt": setup_mpt, "ist": setup_ist, "reconstruct": setup_reconstruct, "ft": setup_ft,
          "did": setup_did, "untuned": setup_untuned}
PER_TASK = ("ft", "did")               # stages that change the PLM: one task, one fresh PLM
