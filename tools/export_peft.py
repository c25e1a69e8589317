"""
Export prompts as PEFT prompt-tuning adapters: a PT prompt, or an IST solution Proj_b(z), per task.

    python -m tools.export_peft --from runs/demo/prompts-s100 --out adapters            # PT, every task
    python -m tools.export_peft --from runs/demo/random/ist-d4-s100-train+test --task pick-07 --out a   # IST

writes <out>/<task>/adapter_config.json + adapter_model.safetensors, which load with
    PeftModel.from_pretrained(model, "<out>/<task>")
and go back in as a starting point with `train.py --stage pt --init-from-peft <out>`.

Caveat (peft 0.21.2, transformers 5.24): PEFT's forward gives our logits for both model kinds, and
its `generate` our answers for T5. For a decoder-only model its `generate` with the KV cache
re-adds the prompt at every step (the cache argument was renamed), so its continuations differ
from ours; `generate(..., use_cache=False)` gives ours (tests/test_peft.py), more slowly.
"""
import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import torch

import checkpoint
import cli
import plm
import stages
from data import UserError


def stage_config(folder):
    """The config.json of the stage that wrote `folder`'s tensors."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise UserError(f"{folder} has no config.json: is it a stage folder of train.py?")
    return json.loads(path.read_text())


def prompts_of(source, tasks):
    """-> ({task: prompt [P, H]}, the stage config that made them) from a PT prompt store or an IST folder."""
    source = Path(source)
    if (source / "z.safetensors").is_file():                             # IST: the prompt is Proj_b(z)
        config = stage_config(source)
        names = tasks or config["tasks"]
        z, autoencoder = stages.load_ist_solution(source, names)
        with torch.no_grad():
            return dict(zip(names, autoencoder.decode(z))), config
    names = tasks or sorted(p.stem for p in source.glob("*.safetensors"))
    if not names:
        raise UserError(f"{source} holds neither z.safetensors (an IST stage) nor <task>.safetensors (PT prompts)")
    prompts = stages.load_prompts(source, names)
    _, meta = checkpoint.load(source / f"{names[0]}.safetensors")
    return dict(zip(names, prompts)), stage_config(meta["source"])


@cli.command()
def main(argv=None):
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", required=True, help="a PT prompt store (runs/<run>/prompts-s<seed>) "
                                                                 "or an IST stage folder")
    p.add_argument("--task", action="append", default=[], help="a task to export (repeatable); default: all")
    p.add_argument("--out", required=True, help="folder; each task's adapter goes to <out>/<task>/")
    args = p.parse_args(argv)
    cli.folder_option("--from", args.source)
    cli.folder_option("--out", args.out, must_exist=False, writable=True)
    prompts, config = prompts_of(args.source, args.task)
    cli.checked()
    encoder_decoder = plm.model_config(SimpleNamespace(model=config["model"])).is_encoder_decoder
    for task, prompt in prompts.items():
        checkpoint.write_peft(Path(args.out) / task, prompt, encoder_decoder, config["model"])
    print(f"{len(prompts)} PEFT adapter(s) in {args.out}/<task>/ for {config['model']}")


if __name__ == "__main__":
    main()
