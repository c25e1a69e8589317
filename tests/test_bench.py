"""tools/bench.py end to end on two tasks: both procedures run through the one loop and the report has
every part, the rows sweep up to the step's 8 rows (the numbers themselves are measured by
`make bench`, not asserted)."""
from tools import bench


def test_bench_reports_the_whole_procedure_its_parts_flops_and_padding(capsys):
    bench.main(["--shape", "tiny", "--tasks", "2", "--steps", "2", "--rounds", "1", "--max-test", "4",
                "--tokens-per-forward", "256", "--precision", "bf16", "--rows-sweep"])
    out = capsys.readouterr().out
    for part in ("whole procedure", "ratio of each round", "training steps", "dev generation", "test generation", "training examples/s",
                 "GFLOP/s in the training part", "% of peak", "in passes of ≤ 256 tokens", "bf16 autocast",
                 "a row's cost against rows a step", "8: "):
        assert part in out, part
