"""Scaling of Emulator.predict with the batch size: time per point and peak memory, one CPU thread.

    python benchmarks/bench_batch_scaling.py [--sizes 1000 10000 100000 1000000] [--mc 0 10 50 --mc-points 2000]

Each size runs in a fresh process, so its peak resident memory (ru_maxrss) is its own. Prints, side by side, the
time per point against the smallest size's (a large batch should be no slower per point) and, for MC dropout, the
time per point and pass (linear scaling: a constant).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from iaemu_theory import Emulator
n, passes, artifact = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] or None
emu = Emulator.load(artifact, device="cpu")
x = emu.domain.from_unit(np.random.default_rng(0).random((n, 7)))
emu.predict(x[:8], mc_passes=passes, seed=0)
t = time.perf_counter()
emu.predict(x, mc_passes=passes, seed=0)
wall = time.perf_counter() - t
print(json.dumps({"n": n, "passes": passes, "seconds": wall,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""


def measure(n: int, passes: int, artifact: str | None) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(passes), artifact or ""], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--mc", type=int, nargs="+", default=[10, 50], help="MC-dropout passes to time")
    p.add_argument("--mc-points", type=int, default=2000)
    p.add_argument("--artifact", default=None)
    args = p.parse_args(argv)
    rows = [measure(n, 0, args.artifact) for n in sorted(args.sizes)]
    base = rows[0]["seconds"] / rows[0]["n"]
    print(f"{'points':>9} {'s/point':>10} {'vs smallest':>12} {'peak RSS':>9}")
    for r in rows:
        per = r["seconds"] / r["n"]
        print(f"{r['n']:>9} {per * 1e6:>8.0f}us {per / base:>11.2f}x {r['peak_rss_gb']:>7.2f}GB")
    mc = [measure(args.mc_points, k, args.artifact) for k in sorted(args.mc)]
    if mc:
        print(f"\nMC dropout, {args.mc_points} points: {'passes':>6} {'s/(point x pass)':>17} {'peak RSS':>9}")
        for r in mc:
            print(f"{'':>30}{r['passes']:>6} {r['seconds'] / (r['n'] * r['passes']) * 1e6:>15.0f}us "
                  f"{r['peak_rss_gb']:>7.2f}GB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
