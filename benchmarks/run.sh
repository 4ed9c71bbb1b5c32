#!/usr/bin/env bash
# The runs behind docs/PERFORMANCE.md. Prints the figures and keeps them, with the raw JSON,
# under benchmarks/results/<date>-<host>/. Arguments go to every `tapfl bench` call
# (e.g. --repeats 3). Needs .venv (./scripts/setup); CPU or CUDA, whichever `device: auto` finds.
set -euo pipefail
cd "$(dirname "$0")/.."
tapfl=.venv/bin/tapfl
out="benchmarks/results/$(date +%Y-%m-%d)-$(hostname -s)"
mkdir -p "$out"

# 1. The demo (flava-tiny, 7 clients, TAP): step floor vs engine step for every kind of
#    client, whole rounds, and the scaling study over 1, 10, 30 and 100 clients.
$tapfl bench --preset demo --json "$out/demo.json" "$@" | tee "$out/demo.txt"

# 2. The same scaling study with client states limited to 1 MiB of memory: the rest spill
#    to disk (safetensors) and come back when a client is sampled or evaluated.
$tapfl bench --preset demo --step-clients 0 --state-budget-mb 1 \
  --json "$out/demo-budget.json" "$@" | tee "$out/demo-budget.txt"

# 3. A round of the paper's 30-client FLAVA scenario at flava-tiny size, on stand-in data
#    shaped like its hub datasets (offline). Drop `--set backbone.name=flava-tiny` on a
#    machine with facebook/flava-full (and a GPU) for the real size.
$tapfl bench --preset paper-flava --set backbone.name=flava-tiny --stand-in-data \
  --clients "" --step-clients 0 --rounds 2 --repeats 2 --json "$out/paper-flava-tiny.json" "$@" \
  | tee "$out/paper-flava-tiny.txt"
