#!/bin/bash
# Re-measure everything in docs/results/ that depends on the shipped emulator, after a new artifact has been installed at
# iaemu_theory/artifacts/iaemu_default.pt (and, for a new halo model, DEFAULT_MODEL set in training/catalogs/nbody/halos.py).
#
#   scripts/remeasure_shipped.sh DATASET NODES LOGDIR
#
# DATASET: the split dataset the artifact was trained on (its test split is evaluated);
# NODES:   prefix of the iaemu-validate mock-node folders, NODES1 NODES2 NODES3 for TNG300 samples 1-3 (made on the
#          first run, reused afterwards);
# LOGDIR:  where the logs and the posterior summary go.
# CATALOG (environment; default hires320x3, the shipped dataset's catalog set) is the catalog of the validation
# mocks; the benchmark times halotools-IA on its first box.
# Two streams run side by side, one per core: the emulator's (evaluation 7 min, Cobaya 1, NUTS 5-7) and the mocks'
# (validation 10-25 with fresh nodes); the benchmark runs last, alone. About 25 minutes on two cores (50 on one).
# The catalog page (`iaemu-catalog validate`) does not depend on the emulator and is not remade here.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 DATASET NODES LOGDIR   (e.g. training/data/dataset_hires320x3.h5 scratch/val scratch/ship)" >&2
  exit 2
fi
data=$1; nodes=$2; logs=$3
catalog=${CATALOG:-hires320x3}
first_box=$(python -c "import os, sys; from training.catalogs.sources import expand_catalog_names as e; print(os.path.relpath(e([sys.argv[1]])[0]))" "$catalog")
[ -f "$data" ] || { echo "dataset $data does not exist" >&2; exit 2; }
mkdir -p "$logs"
export OMP_NUM_THREADS=1
step() { echo "[$(date +%H:%M:%S)] $*"; }

emulator_stream() {
  step "test-split evaluation -> docs/results/emulator_metrics.json, iaemu_theory/artifacts/iaemu_default.metrics.json"
  iaemu-evaluate --data "$data" --out docs/results --artifact-metrics > "$logs/evaluate.log" 2>&1

  for s in 1 2 3; do
    y=yaml/iaemu_tng.yaml; c=chains/iaemu_tng
    if [ $s -gt 1 ]; then y=yaml/iaemu_tng_sample$s.yaml; c=chains/iaemu_tng_sample$s; fi
    step "Cobaya mcmc, TNG300 sample $s"
    /usr/bin/time -f "%e s wall" cobaya-run -f $y > "$logs/cobaya_$s.log" 2>&1
    iaemu-plot $c --out "$logs/tng$s.png" >> "$logs/cobaya_$s.log" 2>&1
    cp "$logs/tng$s.png" docs/results/figures/cobaya_tng_sample${s}_triangle.png
    cp "$logs/tng${s}_ppd.png" docs/results/figures/cobaya_tng_sample${s}_ppd.png
  done
  python - > "$logs/posteriors.txt" <<'PY'
from getdist import loadMCSamples
for s, c in ((1, "chains/iaemu_tng"), (2, "chains/iaemu_tng_sample2"), (3, "chains/iaemu_tng_sample3")):
    m = loadMCSamples(c, settings={"ignore_rows": 0.3}).getMargeStats()
    row = []
    for p in ("mu_cen", "mu_sat"):
        d = m.parWithName(p)
        row.append(f"{p} {d.mean:.3f} [{d.limits[0].lower:.3f}, {d.limits[0].upper:.3f}] (std {d.err:.4f})")
    print(f"sample {s}: " + " | ".join(row))
PY

  step "NUTS"
  /usr/bin/time -f "%e s wall" cobaya-run -f yaml/iaemu_tng_nuts.yaml > "$logs/nuts.log" 2>&1
}

mock_stream() {
  for s in 1 2 3; do
    step "validation against halotools-IA, sample $s (nodes in $nodes$s)"
    python -m training.emulator.validation --sample $s --catalog "$catalog" --grid 11 --work "$nodes$s" --out docs/results --no-progress \
      > "$logs/validate_$s.log" 2>&1
  done
}

step "emulator and mock streams started: tail -f $logs/emulator_stream.log $logs/mock_stream.log"
emulator_stream > "$logs/emulator_stream.log" 2>&1 &
emu=$!
mock_stream > "$logs/mock_stream.log" 2>&1 &
mock=$!
status=0
wait $emu || { echo "emulator stream failed: see $logs/emulator_stream.log" >&2; status=1; }
wait $mock || { echo "mock stream failed: see $logs/mock_stream.log" >&2; status=1; }
[ $status -eq 0 ] || exit $status
cat "$logs/posteriors.txt"

step "benchmark"
python benchmarks/bench_speedup.py --catalog "$first_box" --out docs/results/benchmark.json > "$logs/benchmark.log" 2>&1
python benchmarks/bench_theory.py --skip-run > "$logs/bench_theory.log" 2>&1
step "pages"
python scripts/render_docs.py > "$logs/render_docs.log" 2>&1
step "done: numbers and pages in docs/results/, logs in $logs"
