"""Command-line helpers shared by the training commands, and `iaemu-mock`.

`run_command(prog, body, argv)` runs a command's body the same way for every tool: a bad input
(ValueError, OSError, a held lock) prints one line `PROG: error: ...` and exits 2, any other failure
`PROG: error: unexpected ...` and exits 1, Ctrl-C exits 130 and SIGTERM 143; the traceback is shown
only with `--debug` (anywhere on the command line) or IAEMU_DEBUG=1. A usage error is argparse's
own message and status 2, returned rather than raised, so `main(argv)` always returns a status.
The argparse types (`seed_type`, `positive_int`, ...) refuse bad values while parsing, naming the
option.

`iaemu-mock`: xi, omega, eta of one parameter point of the halotools-IA model, to an npz (and a PNG).

    iaemu-mock --catalog NAME --params mu_cen=..,mu_sat=..,logMmin=..,sigma_logM=..,logM0=..,logM1=..,alpha=..
               [--realisations 10] [--seed S] --out FILE.npz [--plot FILE.png]

NAME: "bolplanck", "toy", an N-body preset ("default", "test") or a catalog file (.npz/.hdf5).
The npz holds r (bin centres), xi, omega, eta (means over realisations), xi_all, omega_all, eta_all
(R x 20), n_galaxies (R), plus seeds, params, param_names, catalog_id, catalog_hash and nan_flag.
The PNG error bars are the standard error of the mean over realisations, std(ddof=1) / sqrt(R).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from iaemu_theory.conventions import (BIN_CENTRES, BIN_EDGES, DEFAULT_REALISATIONS, PARAM_NAMES, STATISTICS,
                                      parse_params)
from training.fileio import LockHeld, atomic_write_bytes

#: Environment variable that, set to anything but "" or "0", makes every command show full tracebacks.
DEBUG_ENV = "IAEMU_DEBUG"
#: Seeds are stored as int64 (dataset attributes, npz): the accepted range is [0, SEED_LIMIT).
SEED_LIMIT = 2**63
#: iaemu-mock refuses a point whose expected galaxy count per realisation exceeds this (memory).
MAX_EXPECTED_GALAXIES = 5e7


# ----------------------------------------------------------------------------------------------
# running a command


class Interrupted(KeyboardInterrupt):
    """A termination signal (SIGTERM) turned into an exception, so that clean-up code runs."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signal.Signals(signum).name}")
        self.signum = int(signum)


def interrupt_exit_code(exc: BaseException) -> int:
    """128 + the signal number: 130 for Ctrl-C (SIGINT), 143 for SIGTERM, as shells report them."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises Interrupted (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """List --debug in a command's help (`run_command` takes it from anywhere on the command line)."""
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (also: {DEBUG_ENV}=1)")


def debug_requested(argv) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def run_command(prog: str, body: Callable[[list], int], argv=None) -> int:
    """Run `body(argv)` (argv without --debug) and turn failures into one `error:` line and an exit code."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    try:
        with sigterm_as_interrupt():
            return body(argv)
    except SystemExit as exc:  # argparse (usage error: its message is printed; --help) or a library's exit
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(f"{prog}: error: {exc.code}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        _explain(debug)
        print(f"{prog}: interrupted ({exc or 'Ctrl-C'})", file=sys.stderr)
        return interrupt_exit_code(exc)
    except (ValueError, OSError, LockHeld) as exc:
        _explain(debug)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:
        _explain(debug)
        print(f"{prog}: error: out of memory ({exc or 'MemoryError'})", file=sys.stderr)
        return 1
    except Exception as exc:
        _explain(debug)
        print(f"{prog}: error: unexpected {type(exc).__name__}: {exc}"
              + ("" if debug else f" (re-run with --debug or {DEBUG_ENV}=1 for the traceback)"), file=sys.stderr)
        return 1


def _explain(debug: bool) -> None:
    if debug:
        traceback.print_exc()


# ----------------------------------------------------------------------------------------------
# argparse types: refuse bad values while parsing (argparse names the option)


def _integer(text: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    return value


def seed_type(text: str) -> int:
    """A seed: an integer in [0, 2**63)."""
    value = _integer(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 2**63): a seed is a non-negative 63-bit integer")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be an integer >= 1")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be an integer >= 0")
    return value


def finite_float(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def check_output_path(path, option: str = "--out") -> Path:
    """Refuse, before any work, an output whose folder is missing or that names a folder."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; expected a file name")
    if not path.parent.is_dir():
        raise ValueError(f"{option} {path}: folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"{option} {path}: folder {path.parent} is not writable")
    return path


# ----------------------------------------------------------------------------------------------
# iaemu-mock


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iaemu-mock", description=__doc__.split("\n\n")[2].split(":", 1)[1].strip())
    p.add_argument("--catalog", default="default",
                   help="bolplanck, toy, an N-body preset (default, test) or a catalog file path (default: default)")
    p.add_argument("--params", required=True,
                   help="all seven parameters as NAME=VALUE,...: " + ",".join(f"{n}=.." for n in PARAM_NAMES))
    p.add_argument("--realisations", type=positive_int, default=DEFAULT_REALISATIONS,
                   help=f"independent mock realisations (default {DEFAULT_REALISATIONS})")
    p.add_argument("--seed", type=seed_type, default=0, help="master seed, an integer in [0, 2**63) (default 0)")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--plot", default=None, help="optional PNG of the three statistics")
    add_debug_argument(p)
    return p


def plot_point(path, r, stats_all: np.ndarray, title: str = "") -> None:
    """Three panels (xi, omega, eta) of the mean over realisations with standard-error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.sum(np.isfinite(stats_all), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(stats_all, axis=0)
        err = np.nanstd(stats_all, axis=0, ddof=1) / np.sqrt(n) if stats_all.shape[0] > 1 else np.zeros_like(mean)
    labels = {"xi": r"$\xi(r)$", "omega": r"$\omega(r)$", "eta": r"$\eta(r)$"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for i, (ax, name) in enumerate(zip(axes, STATISTICS)):
        ax.errorbar(r, mean[i], yerr=err[i], fmt="o-", ms=3, capsize=2)
        ax.set_xscale("log")
        if name == "xi":
            ax.set_yscale("log")
        else:
            ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel(r"$r\ [h^{-1}\,{\rm Mpc}]$")
        ax.set_ylabel(labels[name])
    fig.suptitle(f"{title}\nmean of {stats_all.shape[0]} realisations; error bars: std / sqrt(R)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def check_galaxy_budget(params: dict, catalog, limit: float = MAX_EXPECTED_GALAXIES) -> float:
    """The expected galaxies per realisation (Zheng07 on the catalog's hosts); ValueError above `limit`."""
    from training.generate import expected_galaxy_counts, host_masses

    masses = host_masses(catalog)
    if masses is None:
        return float("nan")
    expected = float(expected_galaxy_counts(np.array([[params[n] for n in PARAM_NAMES]]), masses)[0])
    if not expected <= limit:
        raise ValueError(f"--params logM0={params['logM0']:g}, logM1={params['logM1']:g}, alpha={params['alpha']:g} "
                         f"ask for about {expected:.3g} galaxies per realisation on catalog "
                         f"{getattr(catalog, 'catalog_id', '?')} (at most {limit:.0e} fit in memory); "
                         "expected fewer satellites: a larger logM1 or logM0, or a smaller alpha")
    return expected


def mock_main(argv=None) -> int:
    """Entry point of `iaemu-mock`; returns the exit status (see `run_command`)."""
    return run_command("iaemu-mock", _mock, argv)


def _mock(argv) -> int:
    args = _parser().parse_args(argv)
    params = parse_params(args.params)
    out = Path(args.out if str(args.out).endswith(".npz") else f"{args.out}.npz")  # numpy's naming rule
    check_output_path(out)
    if args.plot:
        check_output_path(args.plot, "--plot")
    from training.catalogs import load_catalog
    from training.mocks import IAMockModel

    t0 = time.perf_counter()
    catalog = load_catalog(args.catalog)
    model = IAMockModel(catalog)
    check_galaxy_budget(params, catalog)
    t1 = time.perf_counter()
    try:
        res = model.measure(params, args.seed, n_realisations=args.realisations, progress=True)
    except (ValueError, MemoryError) as exc:
        raise ValueError(f"the mock at --params {args.params} on catalog {catalog.catalog_id} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    t2 = time.perf_counter()
    mean = res.mean()
    arrays = dict(r=np.asarray(BIN_CENTRES), rbins=np.asarray(BIN_EDGES), n_galaxies=res.n_galaxies, seeds=res.seeds,
                  params=np.array([params[n] for n in PARAM_NAMES]), param_names=np.array(PARAM_NAMES),
                  seed=np.int64(args.seed), catalog_id=np.str_(catalog.catalog_id),
                  catalog_hash=np.str_(catalog.catalog_hash), nan_flag=np.bool_(res.nan_flag))
    for i, name in enumerate(STATISTICS):
        arrays[name] = mean[i]
        arrays[f"{name}_all"] = res.stats[:, i, :]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(out, buffer.getvalue())
    print(f"catalog {catalog.catalog_id}: {model.n_hosts} hosts, loaded in {t1 - t0:.1f} s; "
          f"{args.realisations} realisations in {t2 - t1:.1f} s; mean {res.n_galaxies.mean():.0f} galaxies")
    if res.nan_flag:
        print("warning: some bins are NaN (too few galaxies or pairs); see nan_flag", file=sys.stderr)
    print(f"wrote {out}")
    if args.plot:
        plot_point(args.plot, BIN_CENTRES, res.stats,
                   title=f"{catalog.catalog_id}: " + ", ".join(f"{k}={v:g}" for k, v in params.items()))
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(mock_main())
