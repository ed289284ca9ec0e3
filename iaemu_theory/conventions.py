"""The project's fixed conventions: parameter names and order, radial bins, statistics.

Everything that needs a parameter name, a bin edge or a statistic name imports it from here.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

#: Emulator input order (also the order of every (n, 7) parameter array in the project).
PARAM_NAMES: tuple[str, ...] = ("mu_cen", "mu_sat", "logMmin", "sigma_logM", "logM0", "logM1", "alpha")

#: Alignment parameters and occupation (Zheng07 HOD) parameters.
ALIGNMENT_PARAMS: tuple[str, ...] = ("mu_cen", "mu_sat")
HOD_PARAMS: tuple[str, ...] = ("logMmin", "sigma_logM", "logM0", "logM1", "alpha")
#: Their column indices in PARAM_NAMES order.
ALIGNMENT_COLUMNS: tuple[int, ...] = tuple(PARAM_NAMES.index(n) for n in ALIGNMENT_PARAMS)
HOD_COLUMNS: tuple[int, ...] = tuple(PARAM_NAMES.index(n) for n in HOD_PARAMS)

#: Our names -> halotools param_dict keys.
HALOTOOLS_PARAM_NAMES: dict[str, str] = {
    "mu_cen": "central_alignment_strength",
    "mu_sat": "satellite_alignment_strength",
    "logMmin": "logMmin",
    "sigma_logM": "sigma_logM",
    "logM0": "logM0",
    "logM1": "logM1",
    "alpha": "alpha",
}

#: LaTeX labels for plots and Cobaya.
PARAM_LATEX: dict[str, str] = {
    "mu_cen": r"\mu_{\rm cen}",
    "mu_sat": r"\mu_{\rm sat}",
    "logMmin": r"\log M_{\rm min}",
    "sigma_logM": r"\sigma_{\log M}",
    "logM0": r"\log M_0",
    "logM1": r"\log M_1",
    "alpha": r"\alpha",
}

#: Physical validity of each parameter: (low, high, low_inclusive, high_inclusive).
PARAM_VALID_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "mu_cen": (-1.0, 1.0, True, True),
    "mu_sat": (-1.0, 1.0, True, True),
    "logMmin": (-math.inf, math.inf, False, False),
    "sigma_logM": (0.0, math.inf, False, False),
    "logM0": (-math.inf, math.inf, False, False),
    "logM1": (-math.inf, math.inf, False, False),
    "alpha": (0.0, math.inf, True, False),
}

#: The three statistics, in the order used by every stacked array (..., 3, 20).
STATISTICS: tuple[str, ...] = ("xi", "omega", "eta")
#: halotools' functions that define them.
HALOTOOLS_STATISTICS: dict[str, str] = {"xi": "tpcf", "omega": "ed_3d", "eta": "ee_3d"}

#: Radial bin edges in Mpc/h and their arithmetic-mean centres.
BIN_EDGES: np.ndarray = np.logspace(-1, 1.2, 21)
BIN_CENTRES: np.ndarray = 0.5 * (BIN_EDGES[1:] + BIN_EDGES[:-1])
N_BINS: int = BIN_CENTRES.size
BIN_EDGES.setflags(write=False)
BIN_CENTRES.setflags(write=False)

#: Realisations per parameter point, as in the paper.
DEFAULT_REALISATIONS: int = 10


def _range_text(name: str) -> str:
    lo, hi, lo_inc, hi_inc = PARAM_VALID_RANGES[name]
    left = "[" if lo_inc else "("
    right = "]" if hi_inc else ")"
    return f"{left}{lo:g}, {hi:g}{right}"


def validate_params(params: Mapping[str, float]) -> dict[str, float]:
    """Check a parameter mapping: all 7 names present, finite, physically valid.

    Returns a plain dict of floats in PARAM_NAMES order; raises ValueError naming the bad
    parameter, its value and the allowed range.
    """
    missing = [n for n in PARAM_NAMES if n not in params]
    unknown = [n for n in params if n not in PARAM_NAMES]
    if missing:
        raise ValueError(f"missing parameter(s) {missing}; expected all of {list(PARAM_NAMES)}")
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; expected only {list(PARAM_NAMES)}")
    out: dict[str, float] = {}
    for name in PARAM_NAMES:
        try:
            value = float(params[name])
        except (TypeError, ValueError):
            raise ValueError(f"parameter {name}={params[name]!r} is not a number") from None
        lo, hi, lo_inc, hi_inc = PARAM_VALID_RANGES[name]
        ok = math.isfinite(value)
        ok = ok and (value >= lo if lo_inc else value > lo)
        ok = ok and (value <= hi if hi_inc else value < hi)
        if not ok:
            raise ValueError(f"parameter {name}={value!r} is outside its allowed range {_range_text(name)}")
        out[name] = value
    return out


def params_to_array(params: Mapping[str, float]) -> np.ndarray:
    """A validated parameter mapping as a float64 array in PARAM_NAMES order."""
    p = validate_params(params)
    return np.array([p[n] for n in PARAM_NAMES], dtype=np.float64)


def array_to_params(values) -> dict[str, float]:
    """A length-7 sequence in PARAM_NAMES order as a mapping."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size != len(PARAM_NAMES):
        raise ValueError(f"expected {len(PARAM_NAMES)} values in the order {list(PARAM_NAMES)}, got {values.size}")
    return dict(zip(PARAM_NAMES, values.tolist()))


def parse_params(text: str) -> dict[str, float]:
    """Parse 'mu_cen=0.5,mu_sat=0.1,...' (as on the command line) and validate it."""
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise ValueError(f"cannot parse {item!r}: expected NAME=VALUE with NAME in {list(PARAM_NAMES)}")
        key, value = (s.strip() for s in item.split("=", 1))
        out[key] = value
    return validate_params(out)


def statistics_list(value, allowed=STATISTICS, option: str = "statistics") -> list[str]:
    """A `statistics` option as a list: one name or a sequence of names, each in `allowed`, none twice.

    The one place the option is read (the emulator, the likelihoods, the plotting command); ValueError
    names the bad value and what was expected.
    """
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, str) for v in items):
        raise ValueError(f"{option}={value!r}: expected a non-empty subset of {list(allowed)}")
    bad = [v for v in items if v not in allowed]
    if bad:
        raise ValueError(f"{option}={value!r}: {', '.join(repr(b) for b in bad)} {'is' if len(bad) == 1 else 'are'} "
                         f"not available; expected a non-empty subset of {list(allowed)}")
    if len(set(items)) != len(items):
        raise ValueError(f"{option}={value!r} lists a statistic twice")
    return list(items)

