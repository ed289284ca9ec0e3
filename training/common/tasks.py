"""The task farm: `work(state, item)` over many items, in process, in a process pool, or on MPI ranks.

Every worker builds its `state` once, as `setup(*setup_args)` (the mock model on its catalog: seconds,
and hundreds of MB), then runs any number of items with it. The three farms have one interface, so a
driver (dataset generation, a validation grid) is written once:

    farm.capacity            items that can run at the same time
    farm.submit(item)        start one item
    farm.wait_one(timeout)   the result of the next finished item (None if none finished in time)
    farm.shutdown(abort)     wait for the workers, or (abort) stop them at once where possible
    farm.can_abort           whether an abort stops items in flight

- `SerialFarm`: in this process (no pickling, the state may be given ready-made).
- `PoolFarm`: a `concurrent.futures.ProcessPoolExecutor` with the `spawn` start method (a fork after
  JAX, numba or torch threads can deadlock). Workers ignore Ctrl-C (the driver shuts the pool down) and
  die with the driver even when it is killed with SIGKILL (`exit_with_parent`).
- `MPIFarm`: the worker ranks of an `mpi4py.futures.MPICommExecutor` (rank 0 drives, the others serve);
  use it through `mpi_farm(comm, ...)`. Items in flight on MPI ranks cannot be interrupted.

`setup` and `work` must be importable module-level functions (they are pickled by name). Resuming is the
driver's part: it submits only the items it has no saved result for and saves each result as it arrives;
`run_all` is that loop for drivers with no time limit.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any, Callable, Iterable, Iterator

#: How often a pool worker checks that its driver is still alive (seconds).
PARENT_POLL_SECONDS = 0.5

_STATE: dict = {}


class WorkerLost(RuntimeError):
    """A worker process died (killed, out of memory); the message says what was kept."""


def exit_with_parent(parent_pid: int) -> None:
    """Make this worker die with its driver, even one killed by SIGKILL (which runs no clean-up).

    On Linux the kernel sends SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG; this acts even
    while the worker is inside compiled code). Everywhere, a daemon thread also checks every
    PARENT_POLL_SECONDS that the parent is still `parent_pid` (an orphan is re-parented) and exits
    otherwise. The resource tracker exits by itself once the driver and the workers are gone.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the driver died before the watch began
        os._exit(1)

    def watch():
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="iaemu-parent-watch", daemon=True).start()


def _worker_state(setup: Callable, setup_args: tuple):
    """This worker's state for (setup, setup_args), built at the first item that needs it."""
    key = (setup, tuple(setup_args))
    if _STATE.get("key") != key:
        _STATE.clear()
        _STATE["state"] = setup(*setup_args)
        _STATE["key"] = key
    return _STATE["state"]


def _init_pool_worker(setup: Callable, setup_args: tuple, parent_pid: int) -> None:
    exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and shuts the pool down
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker_state(setup, setup_args)


def _run_item(work: Callable, setup: Callable, setup_args: tuple, item):
    return work(_worker_state(setup, setup_args), item)


class SerialFarm:
    """Items run one at a time in this process, at `wait_one`."""

    can_abort = True

    def __init__(self, work: Callable, setup: Callable | None = None, setup_args: tuple = (), state: Any = None):
        self.work, self.capacity, self.queue = work, 1, []
        self.state = setup(*setup_args) if state is None and setup is not None else state

    def submit(self, item) -> None:
        self.queue.append(item)

    def wait_one(self, timeout: float | None = None):
        return self.work(self.state, self.queue.pop(0))

    def shutdown(self, abort: bool = False) -> None:
        self.queue.clear()


class _ExecutorFarm:
    """Items on a `concurrent.futures` executor whose workers build their state once."""

    def __init__(self, executor, capacity: int, work: Callable, setup: Callable, setup_args: tuple):
        self.executor, self.capacity = executor, int(capacity)
        self.work, self.setup, self.setup_args = work, setup, tuple(setup_args)
        self.futures = set()

    def submit(self, item) -> None:
        self.futures.add(self.executor.submit(_run_item, self.work, self.setup, self.setup_args, item))

    def wait_one(self, timeout: float | None = None):
        done, _ = wait(self.futures, timeout=timeout, return_when=FIRST_COMPLETED)
        if not done:
            return None
        future = done.pop()
        self.futures.discard(future)
        return future.result()


class PoolFarm(_ExecutorFarm):
    """A spawn process pool of `n_workers` (see the module docstring)."""

    can_abort = True

    def __init__(self, n_workers: int, work: Callable, setup: Callable, setup_args: tuple = ()):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_pool_worker, initargs=(setup, tuple(setup_args), os.getpid()))
        super().__init__(pool, n_workers, work, setup, setup_args)

    def shutdown(self, abort: bool = False) -> None:
        """Normal end: wait for the workers. Abort (Ctrl-C, SIGTERM, a time limit): kill them."""
        if abort:
            for process in list((getattr(self.executor, "_processes", None) or {}).values()):
                process.terminate()
        self.executor.shutdown(wait=not abort, cancel_futures=True)


class MPIFarm(_ExecutorFarm):
    """The worker ranks of an `MPICommExecutor` (made by `mpi_farm`); the executor's context closes it."""

    can_abort = False  # busy ranks cannot be interrupted; the launcher's walltime is the hard limit

    def shutdown(self, abort: bool = False) -> None:
        wait(self.futures)
        self.futures.clear()


@contextlib.contextmanager
def mpi_farm(comm, work: Callable, setup: Callable, setup_args: tuple = ()):
    """On rank 0, yield an `MPIFarm` over the other ranks; on the others, serve items and yield None.

    The workers return from the block once rank 0 has left it (whatever happened there), so every rank
    runs the code after the block.
    """
    from mpi4py.futures import MPICommExecutor

    with MPICommExecutor(comm, root=0) as executor:
        if executor is None:
            yield None
            return
        farm = MPIFarm(executor, comm.Get_size() - 1, work, setup, setup_args)
        try:
            yield farm
        finally:
            farm.shutdown()


def make_farm(work: Callable, setup: Callable, setup_args: tuple = (), workers: int = 1, state: Any = None):
    """A `SerialFarm` (workers <= 1; `state` if given, else built here) or a `PoolFarm` of `workers`."""
    if workers <= 1:
        return SerialFarm(work, setup, setup_args, state=state)
    return PoolFarm(workers, work, setup, setup_args)


def run_all(farm, items: Iterable) -> Iterator:
    """Yield the result of every item as it finishes, keeping the farm full; shuts the farm down at the end.

    On an exception (a worker died, Ctrl-C) the farm is aborted; results already yielded are the driver's.
    """
    queue, in_flight = list(items), 0
    try:
        while queue or in_flight:
            while queue and in_flight < farm.capacity:
                farm.submit(queue.pop(0))
                in_flight += 1
            result = farm.wait_one()
            in_flight -= 1
            yield result
    except BaseException:
        farm.shutdown(abort=True)
        raise
    farm.shutdown()
