"""Speed of the IAEmu Cobaya Theory: one `calculate` on one CPU thread, and `cobaya-run yaml/iaemu_tng.yaml`.

    python benchmarks/bench_theory.py [--artifact PATH] [--calls 1000] [--dtype float64|float32] [--skip-run]

Prints the median (and 10-90% range) over `--calls` Theory calculations for the TNG setup (omega only, the
statistic the likelihood asks for; the HOD fixed, so the alignment form's decoders run once) and for all three
statistics, the same with all 7 parameters changing at every call (a fit of the HOD too: every call runs the
networks), the full log-posterior evaluation, and the wall time of `cobaya-run yaml/iaemu_tng.yaml` to
convergence (R-1 < 0.01), each against its target (1 ms, 60 s). Default artifact: $IAEMU_ARTIFACT, else the
shipped one.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import call_times

REPO = Path(__file__).resolve().parents[1]


def report(label: str, times: np.ndarray, target_ms: float | None = None) -> None:
    med = np.median(times) * 1e3
    lo, hi = np.percentile(times, [10, 90]) * 1e3
    line = f"{label:<48s} median {med:7.3f} ms  (10-90%: {lo:.3f}-{hi:.3f} ms, n={times.size})"
    if target_ms:
        line += f"  target <= {target_ms:g} ms: ratio {med / target_ms:.2f} {'OK' if med <= target_ms else 'MISSED'}"
    print(line, flush=True)


def bench_calculate(artifact: str | None, calls: int, dtype: str = "float64") -> None:
    import torch
    from cobaya.model import get_model

    from iaemu_theory.conventions import PARAM_NAMES
    from iaemu_theory.tng300 import TNG300_HOD

    torch.set_num_threads(1)
    theory_opts = {"artifact": artifact, "threads": 1, "dtype": dtype}
    for stats in (["omega"], ["xi", "omega", "eta"]):
        info = {"theory": {"iaemu_theory.IAEmu": theory_opts},
                "likelihood": {"tng": {"class": "iaemu_theory.TNG300Likelihood", "sample": 1, "statistics": stats}}}
        model = get_model(info)
        theory = model.theory["iaemu_theory.IAEmu"]
        rng = np.random.default_rng(0)
        points = [dict(mu_cen=float(a), mu_sat=float(b), **TNG300_HOD[1]) for a, b in rng.uniform(-1, 1, (calls, 2))]
        it = iter(points * 2)

        def calc():
            state = {}
            theory.calculate(state, **next(it))

        report(f"Theory.calculate, statistics={stats}", call_times(calc, calls, warmup=min(50, calls)), 1.0 if stats == ["omega"] else None)
        it2 = iter(points * 2)

        def logpost():
            p = next(it2)
            model.logpost({"mu_cen": p["mu_cen"], "mu_sat": p["mu_sat"]})

        report(f"model.logpost (Theory + likelihood), {stats}", call_times(logpost, calls, warmup=min(50, calls)))
        anywhere = theory.domain.from_unit(rng.random((calls, len(PARAM_NAMES))))
        it3 = iter([dict(zip(PARAM_NAMES, map(float, p))) for p in np.concatenate([anywhere, anywhere])])

        def calc_all_varying():
            theory.calculate({}, **next(it3))

        report(f"Theory.calculate, {stats}, all 7 parameters varying", call_times(calc_all_varying, calls,
                                                                                  warmup=min(50, calls)))
    print(f"torch threads: {torch.get_num_threads()}; emulator: {theory.emulator!r}")


def bench_run(artifact: str | None) -> None:
    exe = shutil.which("cobaya-run")
    if exe is None:
        print("cobaya-run not on PATH: skipped")
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if artifact:
        env["IAEMU_ARTIFACT"] = artifact
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([exe, "--no-mpi", "-f", "-o", f"{tmp}/tng", str(REPO / "yaml" / "iaemu_tng.yaml")],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            print(log[-3000:])
            raise SystemExit(f"cobaya-run failed with exit status {proc.returncode}")
        converged = "The run has converged" in log
        accepted = [line for line in log.splitlines() if "Sampling complete after" in line]
        print(f"cobaya-run yaml/iaemu_tng.yaml: wall {wall:.1f} s (process start, imports, sampling); "
              f"converged: {converged}; {accepted[-1].split('] ')[-1] if accepted else ''}  "
              f"target <= 60 s: ratio {wall / 60:.2f} {'OK' if wall <= 60 and converged else 'MISSED'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", default=None, help="artifact path (default: $IAEMU_ARTIFACT, else shipped)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="the Theory's dtype option")
    parser.add_argument("--skip-run", action="store_true", help="skip the cobaya-run wall-time measurement")
    args = parser.parse_args(argv)
    from iaemu_theory.theory import resolve_artifact

    artifact = resolve_artifact(args.artifact)
    print(f"artifact: {artifact or '(shipped default)'}; python {sys.version.split()[0]}; cpu count {os.cpu_count()}")
    bench_calculate(artifact, args.calls, args.dtype)
    if not args.skip_run:
        bench_run(artifact)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
