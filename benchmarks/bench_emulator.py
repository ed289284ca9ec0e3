"""Per-call latency of Emulator.predict on one CPU thread: fast path (BatchNorm folded, only the requested
decoders) against the plain network, for batch 1, 100 and 10000, omega alone and all three statistics.

    python benchmarks/bench_emulator.py [--artifact FILE] [--calls 1000] [--threads 1]

Without --artifact it uses the shipped artifact, or an untrained paper-size one when none is shipped yet
(same architecture, so the same cost). Prints medians over many calls and the speed-up ratios.
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np
import torch
from harness import median_seconds


def main(argv=None):
    from iaemu_theory.artifact import DEFAULT_ARTIFACT, make_random_artifact
    from iaemu_theory.emulator import Emulator

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", default=None)
    p.add_argument("--calls", type=int, default=1000, help="calls for batch 1 (fewer for larger batches)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="1,100,10000")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    tmp = None
    path = args.artifact
    if path is None:
        if DEFAULT_ARTIFACT.is_file():
            path = DEFAULT_ARTIFACT
        else:
            tmp = tempfile.TemporaryDirectory()
            path = make_random_artifact(Path(tmp.name) / "untrained.pt")
            print(f"(no shipped artifact yet: timing an untrained paper-size network, {path})")
    emu = Emulator.load(path, device="cpu", dtype="float32")
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, artifact {path}")
    print(f"{'batch':>6} {'statistics':>10} {'fast [ms]':>10} {'plain [ms]':>11} {'speed-up':>9} {'fast/point [us]':>16}")
    results = {}
    for batch in (int(b) for b in args.batches.split(",")):
        calls = max(3, min(args.calls, int(args.calls * 2 / batch) + 3)) if batch > 1 else args.calls
        # batch 1: a new point at every call (the same HOD twice would reuse the decoders' outputs)
        pts = emu.domain.from_unit(rng.random((calls + 10 if batch == 1 else batch, 7)))
        args_at = itertools.cycle([dict(zip(emu.param_names, p)) for p in pts] if batch == 1 else [pts])
        for stats in (("omega",), None):
            label = "omega" if stats else "all"
            warm = 10 if batch == 1 else 1
            fast = median_seconds(lambda: emu.predict(next(args_at), statistics=stats), calls, warm)
            plain = median_seconds(lambda: emu.predict_unfolded(next(args_at), statistics=stats), calls, warm)
            results[(batch, label)] = (fast, plain)
            print(f"{batch:>6} {label:>10} {1e3 * fast:>10.3f} {1e3 * plain:>11.3f} {plain / fast:>8.2f}x "
                  f"{1e6 * fast / batch:>16.2f}")
    mc_calls = max(20, args.calls // 20)
    mc_at = itertools.cycle([dict(zip(emu.param_names, p)) for p in emu.domain.from_unit(rng.random((mc_calls + 10, 7)))])
    mc = median_seconds(lambda: emu.predict(next(mc_at), statistics="omega", mc_passes=50, seed=0), mc_calls, 10)
    print(f"batch 1, omega, with 50 MC-dropout passes (epistemic): {1e3 * mc:.3f} ms")
    emu64 = Emulator.load(path, device="cpu", dtype="float64")
    x = torch.tensor(emu.domain.from_unit(rng.random((1, 7))), dtype=torch.float64, requires_grad=True)

    def grad_call():
        out = emu64.predict_torch(x, statistics="omega")["omega"].sum()
        torch.autograd.grad(out, x)

    g = median_seconds(grad_call, max(20, args.calls // 10), 10)
    print(f"batch 1, omega, float64 value + gradient through predict_torch: {1e3 * g:.3f} ms")
    fast1 = results.get((1, "omega"), (None,))[0]
    if fast1 is not None:
        print(f"Theory-speed target (<= 1 ms per batch-1 call, omega only): {1e3 * fast1:.3f} ms -> "
              f"{'met' if fast1 <= 1e-3 else 'NOT met'}")
    if tmp is not None:
        tmp.cleanup()
    return results


if __name__ == "__main__":
    main()
