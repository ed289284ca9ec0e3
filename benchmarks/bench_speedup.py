"""Forward and inverse-problem speed of the emulator against halotools-IA.

    python benchmarks/bench_speedup.py --catalog default --out docs/results/benchmark.json
    python scripts/render_docs.py        # the page docs/results/benchmark.md

Forward, per parameter point, on one CPU core (torch and numba limited to one thread):
- halotools-IA: populate the catalog and measure xi, omega, eta, for `--realisations` realisations
  (the paper's 10), with the project's fused engine (`IAMockModel.measure`) and with halotools' own
  tpcf + ed_3d + ee_3d on the same galaxies;
- the emulator: `Emulator.predict` of the three statistics for batches of 1, 100 and 10,000 points
  (time per point = batch time / batch size); on the GPU as well when CUDA is present.
Inverse problem (TNG300 sample-1 omega, HOD fixed): emulator + NUTS (Pyro, via Cobaya), emulator +
Cobaya mcmc (R-1 < 0.01), and halotools-IA + mcmc ESTIMATED as the per-call mock cost times the number
of posterior evaluations the emulator's mcmc needed (running it would take days).

Writes the numbers to `--out` (default docs/results/benchmark.json); scripts/render_docs.py renders the page.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from harness import halotools_statistics, single_thread

from iaemu_theory.conventions import DEFAULT_REALISATIONS, PARAM_NAMES
from training.common.cli import add_debug_argument, run_command

BATCH_SIZES = (1, 100, 10_000)


def _points(emu, n: int, seed: int = 0) -> np.ndarray:
    """n parameter points inside the emulator's domain (rejection from its bounding box)."""
    rng = np.random.default_rng(seed)
    box = emu.domain.box()
    lo = np.array([box[p][0] for p in PARAM_NAMES])
    hi = np.array([box[p][1] for p in PARAM_NAMES])
    out = np.empty((0, len(PARAM_NAMES)))
    while len(out) < n:
        cand = lo + (hi - lo) * rng.random((max(4 * n, 64), len(PARAM_NAMES)))
        out = np.vstack([out, cand[emu.domain.contains(cand)]])
    return out[:n]


def time_emulator(artifact, device: str = "cpu", batch_sizes=BATCH_SIZES, min_time: float = 1.0) -> dict:
    """Seconds per batch and per point of `Emulator.predict` (all three statistics), median of repeats."""
    import torch

    from iaemu_theory.emulator import Emulator

    emu = Emulator.load(artifact, device=device, dtype="float32")
    sync = torch.cuda.synchronize if emu.device.type == "cuda" else (lambda: None)
    out = {}
    for b in batch_sizes:
        # batch 1: a new point at every call (the same HOD twice would reuse the decoders' outputs)
        x = _points(emu, b if b > 1 else 64, seed=b)
        batches = itertools.cycle([x] if b > 1 else [x[i:i + 1] for i in range(len(x))])
        for _ in range(2):                       # warm up (allocation, kernels)
            emu.predict(next(batches))
        sync()
        times = []
        t_start = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - t_start < min_time and len(times) < 2000):
            batch = next(batches)
            t0 = time.perf_counter()
            emu.predict(batch)
            sync()
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        out[b] = {"batch_s": med, "per_point_s": med / b, "repeats": len(times)}
    return out


def time_mocks(catalog, params_list, realisations: int, seed: int = 0, halotools: bool = True) -> dict:
    """Per-point seconds of halotools-IA: populate, fused-engine statistics, halotools' statistics."""
    from training.mocks.model import IAMockModel, galaxy_arrays, realisation_seed

    model = IAMockModel(catalog)
    model.measure(params_list[0], seed=seed, n_realisations=1)        # compile the numba kernels first
    populate = fused = ht = 0.0
    n_gal = []
    max_diff = 0.0
    for k, params in enumerate(params_list):
        for r in range(realisations):
            t0 = time.perf_counter()
            table = model.populate(params, realisation_seed(seed + k, r))
            t1 = time.perf_counter()
            stats = model.statistics(table)
            t2 = time.perf_counter()
            populate += t1 - t0
            fused += t2 - t1
            n_gal.append(len(table))
            if halotools:
                pos, ori = galaxy_arrays(table)
                t3 = time.perf_counter()
                ref = halotools_statistics(pos, ori, model.Lbox)
                ht += time.perf_counter() - t3
                ok = np.isfinite(ref) & np.isfinite(stats)
                if ok.any():
                    max_diff = max(max_diff, float(np.max(np.abs(ref[ok] - stats[ok]) / (np.abs(ref[ok]) + 1e-3))))
    n = len(params_list)
    out = {"points": n, "realisations": realisations, "mean_galaxies": float(np.mean(n_gal)),
           "populate_s": populate / n, "fused_s": fused / n,
           "per_point_fused_s": (populate + fused) / n}
    if halotools:
        out.update(halotools_stats_s=ht / n, per_point_halotools_s=(populate + ht) / n,
                   max_rel_difference_fused_vs_halotools=max_diff)
    return out


def inverse_problem(artifact, sample: int, seed: int, nuts: dict | None, rminus1: float = 0.01) -> dict:
    """Wall times of emulator + NUTS and emulator + Cobaya mcmc on TNG300 `sample` (one CPU thread)."""
    from training.emulator.validation import timed_sampler

    info = {"theory": {"iaemu_theory.IAEmu": {"artifact": artifact, "threads": 1}},
            "likelihood": {"tng300": {"class": "iaemu_theory.TNG300Likelihood", "sample": int(sample)}}}
    out = {}
    runs = {"mcmc": {"mcmc": {"Rminus1_stop": rminus1, "Rminus1_cl_stop": 0.2, "max_tries": 10000,
                              "seed": int(seed)}}}
    if nuts is not None:
        runs["nuts"] = {"iaemu_theory.samplers.NUTS": {**nuts, "seed": int(seed), "progress": False}}
    for name, sampler_info in runs.items():
        sampler, res = timed_sampler(info, sampler_info)
        if name == "mcmc":
            s = sampler.products()["sample"]
            res.update(evaluations=int(round(float(s["weight"].sum()))), accepted=int(len(s)),
                       converged=bool(getattr(sampler, "converged", False)))
        else:
            summ = sampler.products()["summary"]
            res.update(gradient_evaluations=int(sum(c["gradient_evaluations"] for c in summ["per_chain"].values())),
                       draws=int(summ["chains"] * summ["draws_per_chain"]),
                       min_ess=float(min(p["ess"] for p in summ["params"].values())),
                       max_rhat=float(max(p["rhat"] for p in summ["params"].values())), settings=summ["settings"])
        out[name] = res
    return out


def _parser():
    p = argparse.ArgumentParser(prog="bench_speedup.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", default="default", help="halo catalog for the halotools-IA timings (default 'default')")
    p.add_argument("--artifact", default=None, help="emulator artifact (default: $IAEMU_ARTIFACT or the shipped one)")
    p.add_argument("--sample", type=int, default=1, choices=(1, 2, 3),
                   help="TNG300 sample: its HOD for the mock points and the inverse problem (default 1)")
    p.add_argument("--realisations", type=int, default=DEFAULT_REALISATIONS)
    p.add_argument("--mock-points", type=int, default=2, help="parameter points timed with halotools-IA (default 2)")
    p.add_argument("--no-halotools-stats", action="store_true", help="skip halotools' own tpcf/ed_3d/ee_3d timing")
    p.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)))
    p.add_argument("--no-gpu", action="store_true", help="skip the GPU figures even when CUDA is present")
    p.add_argument("--no-inverse", action="store_true", help="skip the inverse-problem runs")
    p.add_argument("--nuts-warmup", type=int, default=2000)
    p.add_argument("--nuts-samples", type=int, default=4000)
    p.add_argument("--nuts-chains", type=int, default=1)
    p.add_argument("--no-nuts", action="store_true", help="skip emulator + NUTS")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/results/benchmark.json",
                   help="JSON file of the numbers (the page is rendered from it by scripts/render_docs.py)")
    add_debug_argument(p)
    return p


def main(argv=None) -> int:
    """Run the benchmark; returns the exit status (see `training.common.cli.run_command`)."""
    return run_command("bench_speedup.py", _main, argv)


def _main(argv: list) -> int:
    args = _parser().parse_args(argv)
    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    except ValueError:
        raise ValueError(f"--batch-sizes {args.batch_sizes!r}: expected comma-separated integers") from None
    if min(batch_sizes) < 1 or args.realisations < 1 or args.mock_points < 1:
        raise ValueError(f"--batch-sizes {args.batch_sizes}, --realisations {args.realisations} and --mock-points "
                         f"{args.mock_points} must be positive")
    single_thread()
    import torch

    from iaemu_theory.emulator import Emulator
    from iaemu_theory.theory import resolve_artifact
    from iaemu_theory.tng300 import TNG300_HOD
    from training.catalogs.sources import load_catalog

    artifact = resolve_artifact(args.artifact)
    emu = Emulator.load(artifact, device="cpu")
    res = {"command": " ".join(["python benchmarks/bench_speedup.py", *argv]),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
                      f"torch {torch.__version__}",
           "date": time.strftime("%Y-%m-%d %H:%M"), "catalog": args.catalog, "sample": args.sample,
           "artifact": artifact or "(shipped default)", "untrained": bool(emu.metadata.get("training", {}).get("untrained"))
           if isinstance(emu.metadata, dict) else False}
    print("timing the emulator on one CPU thread ...", flush=True)
    res["emulator_cpu"] = time_emulator(artifact, "cpu", batch_sizes)
    if torch.cuda.is_available() and not args.no_gpu:
        print("timing the emulator on the GPU ...", flush=True)
        res["emulator_gpu"] = time_emulator(artifact, "cuda", batch_sizes)
        res["gpu_name"] = torch.cuda.get_device_name(0)
    print(f"timing halotools-IA on catalog {args.catalog} ({args.mock_points} point(s) x {args.realisations} "
          f"realisations) ...", flush=True)
    catalog = load_catalog(args.catalog)
    rng = np.random.default_rng(args.seed)
    hod = TNG300_HOD[args.sample]
    params = [dict(mu_cen=float(rng.uniform(-1, 1)), mu_sat=float(rng.uniform(-1, 1)), **hod)
              for _ in range(args.mock_points)]
    res["mocks"] = time_mocks(catalog, params, args.realisations, seed=args.seed,
                              halotools=not args.no_halotools_stats)
    if not args.no_inverse:
        print("inverse problem: emulator + mcmc" + ("" if args.no_nuts else " and emulator + NUTS") + " ...",
              flush=True)
        nuts = None if args.no_nuts else {"warmup": args.nuts_warmup, "samples": args.nuts_samples,
                                          "chains": args.nuts_chains}
        res["inverse"] = inverse_problem(artifact, args.sample, args.seed, nuts)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(res, indent=1, default=float)
    out.write_text(text)
    print(text)
    print(f"render the page: python scripts/render_docs.py --results {out.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
