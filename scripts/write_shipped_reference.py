"""Record what the shipped emulator gives at fixed points, for the regression test tests/test_shipped.py.

    python scripts/write_shipped_reference.py          # writes tests/data/shipped_reference.json

Run it only after a new artifact has been reviewed and installed at iaemu_theory/artifacts/iaemu_default.pt: the
test fails whenever the artifact's predictions differ from the recorded ones, so that a wrong or stale artifact
cannot be committed unnoticed.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cobaya.model import get_model

from iaemu_theory import Emulator
from iaemu_theory.conventions import ALIGNMENT_PARAMS, PARAM_NAMES, STATISTICS
from iaemu_theory.tng300 import TNG300_HOD

#: The TNG300 posterior means (mu_cen, mu_sat) of the shipped emulator, per sample (docs/results/index.md).
BEST_FITS = {1: (0.756, 0.320), 2: (0.715, 0.079), 3: (0.651, 0.008)}
#: Where the sample-1 log-posterior is recorded (the maximum posterior of yaml/iaemu_tng_minimize.yaml).
LOGPOST_POINT = {"mu_cen": 0.757, "mu_sat": 0.320}
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "shipped_reference.json"


def points() -> dict[str, dict[str, float]]:
    """The parameter points, by name: the three TNG300 best fits."""
    return {f"tng300_sample{s}": {**dict(zip(ALIGNMENT_PARAMS, mu)), **TNG300_HOD[s]} for s, mu in BEST_FITS.items()}


def sample1_model():
    """The model of yaml/iaemu_tng.yaml: the shipped emulator and TNG300 sample 1."""
    return get_model({"theory": {"iaemu_theory.IAEmu": None},
                      "likelihood": {"iaemu_theory.TNG300Likelihood": {"sample": 1}}})


def measure() -> dict:
    emu = Emulator.load(device="cpu", dtype="float64")
    out = {"artifact_weights_sha256": emu.artifact.weights_sha256, "points": {}}
    for name, point in points().items():
        pred = emu.predict(point)
        out["points"][name] = {"params": {n: float(point[n]) for n in PARAM_NAMES},
                               **{k: pred[k][0].tolist() for k in pred if k != "inside"}}
    out["sample1_logpost"] = {"point": LOGPOST_POINT,
                              "logpost": float(sample1_model().logposterior(LOGPOST_POINT).logpost)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    record = measure()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}: {len(record['points'])} points x {len(STATISTICS)} statistics, sample-1 logpost "
          f"{record['sample1_logpost']['logpost']:.6f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
