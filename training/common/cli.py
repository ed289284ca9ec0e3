"""Command-line helpers shared by the training commands.

`run_command(prog, body, argv)` runs a command's body the same way for every tool: a bad input
(ValueError, OSError, a held lock) prints one line `PROG: error: ...` and exits 2, any other failure
`PROG: error: unexpected ...` and exits 1, Ctrl-C exits 130 and SIGTERM 143; the traceback is shown
only with `--debug` (anywhere on the command line) or IAEMU_DEBUG=1. A usage error is argparse's
own message and status 2, returned rather than raised, so `main(argv)` always returns a status.
The argparse types (`seed_type`, `positive_int`, ...) refuse bad values while parsing, naming the
option.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable

from training.common.fileio import LockHeld
from training.common.tasks import WorkerLost

#: Environment variable that, set to anything but "" or "0", makes every command show full tracebacks.
DEBUG_ENV = "IAEMU_DEBUG"
#: Seeds are stored as int64 (dataset attributes, npz): the accepted range is [0, SEED_LIMIT).
SEED_LIMIT = 2**63


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


def file_backend() -> None:
    """Draw figures without a window (matplotlib's Agg): for commands, which only write files.

    Library functions never choose a backend; a notebook or an application keeps its own.
    """
    import matplotlib

    matplotlib.use("Agg")


def run_command(prog: str, body: Callable[[list], int], argv=None) -> int:
    """Run `body(argv)` (argv without --debug) and turn failures into one `error:` line and an exit code."""
    file_backend()
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
    except WorkerLost as exc:
        _explain(debug)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
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
