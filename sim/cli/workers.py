"""Worker processes for ``servesim run --jobs N`` that never outlive the command.

A worker dies with its parent however the parent ends: on Linux the kernel kills it when the
parent exits (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), and everywhere a daemon thread checks
every 0.2 s that its parent is still the process that started it (``os.getppid()``) and exits
otherwise. Workers ignore Ctrl-C (the terminal sends it to the whole process group): the parent
handles it, cancels what has not started and kills the workers before it exits; SIGTERM is
handled the same way.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any

__all__ = ["Terminated", "run_in_workers"]

WATCH_INTERVAL_S = 0.2
"""How often a worker checks that its parent is alive (without PDEATHSIG this bounds the time a
worker outlives a killed parent)."""
_PR_SET_PDEATHSIG = 1


class Terminated(KeyboardInterrupt):
    """The parent received SIGTERM (handled like Ctrl-C: workers stopped, points kept)."""


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl: the watch thread still covers it
        pass


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(WATCH_INTERVAL_S)


def _init_worker(parent: int) -> None:
    """Runs first in every worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _set_parent_death_signal()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel queued work and kill the workers now (they hold no state worth keeping)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)


def run_in_workers(
    fn: Callable[..., Any], tasks: Iterable[tuple[Any, tuple[Any, ...]]], jobs: int,
    on_result: Callable[[Any, Any], None],
) -> None:
    """Call ``fn(*args)`` for every ``(key, args)`` in ``jobs`` processes; ``on_result(key, value)``
    in this process as each finishes. Any exception (a worker's, Ctrl-C, SIGTERM) stops every
    worker before it propagates."""
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        futures: dict[Future[Any], Any] = {pool.submit(fn, *args): key for key, args in tasks}
        for future in as_completed(futures):
            on_result(futures[future], future.result())
    except BaseException:
        _stop(pool)
        raise
    else:
        pool.shutdown()
    finally:
        if main:
            signal.signal(signal.SIGTERM, old)
