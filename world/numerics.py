"""The offline world's CPU arithmetic pinned to one code path: the same bits on one machine, and among
CPUs of one vendor; across vendors, another draw of the world's numbers within the README's bands.

Few-shot training amplifies the last bit of every kernel (a difference grows about tenfold every four
PT steps, world/WORLD.md), so each code path draws its own world from the same shipped weights. The pin
chooses one path wherever a library offers the choice:

  ONEDNN_MAX_CPU_ISA=AVX2   oneDNN's kernels (GELU) on their AVX2 code;
  ATEN_CPU_CAPABILITY=avx2  ATen's own vectorised kernels (norms, softmax, Adam) 8 floats wide;
  MKL_CBWR=AVX2,STRICT      MKL's reproducible AVX2 branch (matmul, exp, log, tanh), whatever the alignment;
  2 threads                 a reduction split in two is summed in another order than in one or four.

What that buys, measured (world/WORLD.md, ../shared/repro/machines.md): AMD EPYCs with AVX2 only and with
AVX-512 compute the same bits under it, so a machine's results can be compared with its vendor's
reference. What it cannot buy: MKL keeps its reproducible branch on Intel CPUs only (elsewhere it falls
back to its own choice), oneDNN promises nothing across CPUs, and an Intel Xeon computes other bits under
every one of 30 settings, even in float64 after 120 steps. So the tests compare a machine only with
itself, and the README gives each world number with its band over the draws. It costs nothing
measurable on 2 cores (tools/BENCH.md).

All of them are read when torch loads or first computes, so `pin()` must run before `import torch`:
world/world.py, world/oracle.py, paper/experiments.py on the world and tests/conftest.py call it first. Real models and
GPUs are left alone unless IPT_NUMERICS=pinned; IPT_NUMERICS=native leaves the world unpinned too.
`state()` says what a run got, never guessing.
"""
import os
import sys

THREADS = 2
PINNED = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT",
          "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}


def wanted(default):
    """Pin? IPT_NUMERICS (pinned | native) decides; else the entry point's default."""
    choice = os.environ.get("IPT_NUMERICS", "")
    if choice not in ("", "pinned", "native"):
        sys.exit(f"error: IPT_NUMERICS is pinned or native, got {choice!r}")
    return choice == "pinned" if choice else default


def pin(default=True):
    """Set the pinned numerics for this process and its children, before torch loads. Where torch is
    already loaded, say so on stderr: the run goes on, unpinned, and `state()` says it."""
    if not wanted(default):
        return
    if "torch" in sys.modules and not pinned_already():
        print("warning: torch was imported before numerics.pin(); this run's CPU numerics are native, "
              "not pinned (import numerics first)", file=sys.stderr)
        return
    os.environ.update(PINNED)
    os.environ["IPT_NUMERICS"] = "pinned"
    apply_threads()


def pin_if_main(module, default=True):
    """`pin(default)` where `module` is the program being run (`__name__ == "__main__"`), not an import."""
    if module == "__main__":
        pin(default)


def pinned_already():
    return all(os.environ.get(k) == v for k, v in PINNED.items())


def apply_threads():
    """torch's own thread count: OMP_NUM_THREADS sets it at load, this keeps it if torch is loaded."""
    if "torch" in sys.modules and pinned_already():
        sys.modules["torch"].set_num_threads(THREADS)


def state():
    """One line: what this process computes with (for reports and test messages)."""
    import torch
    cpu = torch.backends.cpu.get_cpu_capability()
    pinned = pinned_already() and cpu == "AVX2" and torch.get_num_threads() == THREADS
    return (f"{'pinned' if pinned else 'native'} CPU numerics: ATen {cpu}, oneDNN "
            f"{os.environ.get('ONEDNN_MAX_CPU_ISA', 'native')}, MKL {os.environ.get('MKL_CBWR', 'native')}, "
            f"{torch.get_num_threads()} threads on {cpu_name()}")


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return "an unknown CPU"
    isa = "AMX" if "amx_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model or 'an unknown CPU'} ({isa})"
