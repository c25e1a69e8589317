"""
The stages with --adapter lora (lora.py): the same loop as the prompts' (stages.py), a LoRA per task
where a prompt was.

  pt    each task's LoRA (A, B on the target layers) trains; loss Σ_k L_LM(task k)
                                  -> <run>/loras-s<seed>/<task>/ (a PEFT LoRA adapter)
  msf   the autoencoder over the training tasks' canonical LoRAs; loss mean_k L_LM(θ̂_k) + α · rec
                                  -> lora-msf-d<d>/autoencoder.safetensors
  ist   z only (d_I numbers a task) through --subspace msf | random | pca | mean | delta-mean | delta-mean-r
        | delta-pca | hub | basis | fastfood (lora_subspaces.py)       -> z.safetensors, and each task's LoRA Proj_b(z) as a PEFT adapter, peft/<task>/

PEFT adapters in and out: the PT store is PEFT's own format (PeftModel.from_pretrained loads a task's
folder and gives our logits), and `--stage pt --init-from-peft DIR` starts from LoRA adapters there.
What a stage reads is loaded and checked against the model's layers (a meta-device copy built from
its config, no weights) before the PLM loads.
"""
import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm import tqdm

import checkpoint
import data
import ipt
import lora
import lora_subspaces
import stages
from cli import OptionError
from data import UserError


def targets(cfg, config):
    return tuple(cfg.lora_targets.split(",")) if cfg.lora_targets else lora.DEFAULT_TARGETS[config.is_encoder_decoder]


def shape_of(cfg, config):
    """The LoRA's layers in the model described by `config`, from a copy on the meta device (no memory)."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM
    kind = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    with torch.device("meta"):
        skeleton = kind.from_config(config)
    try:
        return lora.target_layers(skeleton, targets(cfg, config), cfg.lora_rank)
    except ValueError as e:
        raise OptionError(str(e)) from None


def store(cfg):
    """Where PT writes each task's LoRA and MSF and the baselines read them."""
    seed = f"-seed{cfg.seed}" if cfg.seed != stages.DEFAULT_SEED else ""
    return Path(cfg.prompt_store or Path(cfg.run) / f"loras-s{cfg.data_seed}{seed}")


# -----------------------------------------------------------------------------
# PEFT LoRA adapters (peft 0.21): adapter_config.json + adapter_model.safetensors with
# base_model.model.<layer>.lora_A.weight (r, in) and .lora_B.weight (out, r)

def write_peft(folder, shape, theta, alpha, encoder_decoder, base_model):
    """θ (N,) -> a PEFT LoRA adapter folder."""
    tensors = {}
    for (name, _, _), (A, B) in zip(shape.layers, shape.split(theta.detach().float().cpu()[None])):
        tensors[f"base_model.model.{name}.lora_A.weight"] = A[0].contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = B[0].contiguous()
    config = {"peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM" if encoder_decoder else "CAUSAL_LM",
              "r": shape.rank, "lora_alpha": alpha, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
              "target_modules": sorted({n.rsplit(".", 1)[-1] for n, _, _ in shape.layers}),
              "base_model_name_or_path": base_model, "inference_mode": True}
    checkpoint.save_plain(Path(folder) / "adapter_model.safetensors", tensors)
    checkpoint.write_text(Path(folder) / "adapter_config.json", json.dumps(config, indent=2) + "\n")


def _read_part(path, read, remedy):
    try:
        return read(path)
    except Exception as e:                                 # JSON, UTF-8, SafetensorError, a folder in its place …
        raise checkpoint.CheckpointError(f"{path} cannot be read as a LoRA adapter's ({str(e)[:120]}): {remedy}") from None


def read_peft(folder, shape, alpha):
    """A PEFT LoRA adapter folder -> θ (N,) for `shape`, B rescaled when its lora_alpha differs from ours
    (the same ΔW); CheckpointError naming what does not fit."""
    folder = Path(folder)
    remedy = "give a folder written by PEFT's save_pretrained for LoRA, or by train.py --adapter lora --stage pt"
    config = _read_part(folder / "adapter_config.json", lambda f: json.loads(f.read_text()), remedy)
    tensors = _read_part(folder / "adapter_model.safetensors", lambda f: load_file(str(f)), remedy)
    if config.get("peft_type") != "LORA" or config.get("r") != shape.rank:
        raise checkpoint.CheckpointError(f"{folder} is a {config.get('peft_type')} adapter of r = {config.get('r')}, "
                                         f"this run has LoRA r = {shape.rank}: {remedy}")
    rescale = (config.get("lora_alpha", 8) / shape.rank) / (alpha / shape.rank)
    pairs = []
    for name, i, o in shape.layers:
        A, B = (tensors.get(f"base_model.model.{name}.lora_{x}.weight") for x in "AB")
        if A is None or B is None or A.shape != (shape.rank, i) or B.shape != (o, shape.rank):
            raise checkpoint.CheckpointError(f"{folder} has no {shape.rank}-rank LoRA of {name} ({i} -> {o}): {remedy}")
        pairs.append((A.float()[None], B.float()[None] * rescale))
    return shape.join(pairs)[0]


def load_library(cfg, shape, names, why):
    """The stored PT LoRAs of `names`, canonical -> (K, N)."""
    where = store(cfg)
    missing = [n for n in names if not (where / n / "adapter_config.json").is_file()]
    if missing:
        raise UserError(f"{why}; {len(missing)} missing in {where}: {', '.join(missing)}\nMake them first: python "
                        f"train.py --adapter lora --stage pt --run {cfg.run} --split {cfg.split}")
    return lora.canonical(shape, torch.stack([read_peft(where / n, shape, cfg.lora_alpha) for n in names]))


def training_library(cfg, shape, why):
    """The canonical PT LoRAs of the split's training tasks -> (K_train, N)."""
    return load_library(cfg, shape, data.load_split(cfg.split, data.load_tasks(cfg.tasks_file))["train"], why)


def msf_dir(cfg):
    return stages.stage_dir(replace(cfg, stage="msf", seed=cfg.msf_seed, msf_seed=stages.DEFAULT_SEED))


def read_inputs(cfg, names, model_config):
    """What a LoRA stage reads, loaded and checked before the PLM is. -> the setup's keyword arguments."""
    config = model_config()
    inputs = {"shape": shape_of(cfg, config)}
    shape = inputs["shape"]
    if cfg.stage == "msf":
        inputs["pt_loras"] = load_library(cfg, shape, names, "MSF reads the PT LoRA of every training task")
    if cfg.stage == "pt" and cfg.init_from_peft:
        inputs["init"] = torch.stack([read_peft(stages.peft_folder(cfg.init_from_peft, n), shape, cfg.lora_alpha)
                                      for n in names])
    if cfg.stage == "ist" and cfg.subspace == "msf":
        path = msf_dir(cfg) / "autoencoder.safetensors"
        if not path.is_file():
            raise UserError(f"no LoRA subspace at {path.parent}: make it with python train.py --adapter lora --stage msf "
                            f"--intrinsic-dim {cfg.intrinsic_dim} --run {cfg.run} --split {cfg.split}")
        tensors, meta = checkpoint.load(path, f"train the subspace again: delete {path.parent} and re-run MSF")
        if [tuple(x) for x in meta["layers"]] != list(shape.layers) or meta["rank"] != shape.rank:
            raise UserError(f"{path.parent} was trained for another model or LoRA rank (its config.json); this run "
                            f"has r = {shape.rank} on {len(shape.layers)} layers")
        if "origin" not in tensors:
            raise UserError(f"{path} was made before the LoRA decoder was factored: delete {path.parent} and run "
                            f"LoRA-MSF again (python train.py --adapter lora --stage msf --run {cfg.run} --split {cfg.split})")
        ae = lora.LoraAutoencoder(shape.size, meta["intrinsic_dim"], meta["hidden"], meta["basis"])
        with torch.no_grad():
            ae.origin.copy_(tensors.pop("origin"))
            ae.scale.copy_(tensors.pop("scale"))
        checkpoint.fit(ae, tensors, path)
        library = training_library(cfg, shape, "LoRA-IST reads z in the units of MSF's training tasks' codes")
        inputs["subspace"], inputs["source"] = lora_subspaces.Coded(ae, library), str(path)
    if cfg.stage == "ist" and cfg.subspace in lora_subspaces.NEEDS_LIBRARY:
        library = training_library(cfg, shape, f"--subspace {cfg.subspace} is built from the training tasks' LoRAs")
        try:
            inputs["subspace"] = lora_subspaces.build(cfg.subspace, shape, cfg.intrinsic_dim, library,
                                                      torch.Generator().manual_seed(cfg.seed))
        except ValueError as e:
            raise OptionError(str(e)) from None
        inputs["source"] = cfg.subspace
    return inputs


# -----------------------------------------------------------------------------
# The stages

def stage_of(cfg, plm, module, names, **given):
    """The LoRA stage over `module` (vectors: tasks -> θ): its rows bound to the PLM's layers."""
    binder = lora.RowLoRA(plm, given.pop("shape"), cfg.lora_alpha, module.vectors)
    return stages.Stage(module, binder, **given)


def setup_pt(cfg, plm, tokenizer, names, prepared, shape, init=None):
    """LoRA-PT: K LoRAs train (PEFT's start, or given adapters); loss Σ_k L_LM; saves each as a PEFT adapter."""
    given = init is not None
    if not given:
        init = torch.stack([lora.init_lora(shape, data.task_generator(cfg.seed, n)) for n in names])
    module = lora.TaskLoRAs(init)

    def artifact(out, state):
        for k, name in enumerate(names):
            write_peft(store(cfg) / name, shape, state[f"loras.{k}"], cfg.lora_alpha, plm.config.is_encoder_decoder,
                       cfg.model)
    return stage_of(cfg, plm, module, names, shape=shape, groups=stages.per_task_groups(names, "loras"),
                    artifact=artifact, score_start=given)


def setup_msf(cfg, plm, tokenizer, names, prepared, shape, pt_loras):
    """LoRA-MSF: only the autoencoder trains; loss mean_k L_LM(θ̂_k) + α · relative ‖ΔŴ − ΔW‖²; saves it."""
    torch.manual_seed(cfg.seed)
    ae = lora.LoraAutoencoder(shape.size, cfg.intrinsic_dim, cfg.ae_hidden or plm.config.hidden_size, cfg.lora_basis)
    ae.start_at(shape, pt_loras)
    module = lora.ReconstructedLoRAs(ae, shape, pt_loras)
    every = torch.arange(len(names))
    with torch.no_grad():
        tqdm.write(f"msf: Proj_b has {sum(p.numel() for p in ae.proj_b.parameters()):,} numbers; relative "
                   f"reconstruction error at the start {float(module.reconstruction_error(every)):.4f}")

    def artifact(out, state):
        checkpoint.save(out / "autoencoder.safetensors", {**{k.removeprefix("autoencoder."): v for k, v in state.items()},
                                                          "origin": ae.origin, "scale": ae.scale},
                        intrinsic_dim=cfg.intrinsic_dim, hidden=ae.proj_b[0].out_features, basis=cfg.lora_basis,
                        layers=shape.layers, rank=shape.rank, alpha=cfg.lora_alpha, tasks=names, loras=str(store(cfg)))
    objective, monitor = stages.msf_terms(cfg, lambda: module.reconstruction_error(every))
    return stage_of(cfg, plm, module, names, shape=shape, objective=objective, artifact=artifact, monitor=monitor,
                    groups=[(every.tolist(), [n for n, _ in module.named_parameters()])])


def setup_ist(cfg, plm, tokenizer, names, prepared, shape, subspace=None, source="random"):
    """LoRA-IST: only z trains, θ = Proj_b(z) through the subspace (frozen); saves z and each task's LoRA."""
    if subspace is None and cfg.subspace == "random":                  # MSF's maps, untrained
        torch.manual_seed(cfg.seed)
        subspace = lora.LoraAutoencoder(shape.size, cfg.intrinsic_dim, cfg.ae_hidden or plm.config.hidden_size,
                                        cfg.lora_basis)
    elif subspace is None:                                             # basis, fastfood: no library
        subspace = lora_subspaces.build(cfg.subspace, shape, cfg.intrinsic_dim, None,
                                        torch.Generator().manual_seed(cfg.seed))
        source = cfg.subspace
    shape = getattr(subspace, "shape", shape)                          # the delta- subspaces' rank K·r
    if hasattr(subspace, "start"):
        z = subspace.start(len(names))
    else:
        z = torch.stack([ipt.init_z(cfg.z_init, 1, cfg.intrinsic_dim, data.task_generator(cfg.seed, n))[0]
                         for n in names])
    module = lora.IntrinsicLoRAs(subspace, z)
    module.z.requires_grad_(z.size(1) > 0)                             # the mean LoRA: nothing trains

    def artifact(out, state):
        checkpoint.save(out / "z.safetensors", {name: state[f"z.{k}"] for k, name in enumerate(names)},
                        subspace=source, seed=cfg.seed)
        with torch.no_grad():
            theta = module.subspace.decode(torch.stack([state[f"z.{k}"] for k in range(len(names))]))
        for k, name in enumerate(names):
            write_peft(out / "peft" / name, shape, theta[k], cfg.lora_alpha, plm.config.is_encoder_decoder, cfg.model)
    groups = stages.per_task_groups(names, "z") if z.size(1) else [([k], []) for k in range(len(names))]
    return stage_of(cfg, plm, module, names, shape=shape, groups=groups, artifact=artifact)


SETUPS = {"pt": setup_pt, "msf": setup_msf, "ist": setup_ist}
