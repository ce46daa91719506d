"""Where independent simulations run: in this process, or as tasks on a Dask cluster.

An :class:`Executor` maps a picklable top-level function over items and returns the results
in the order of the items, whatever order they finished in. Every simulation servesim runs
draws its requests from its own seed, so a result does not depend on which executor ran it
or in what order: serial, ``--jobs N`` (a local Dask cluster of N single-threaded worker
processes) and a remote cluster give byte-identical results (``tests/test_executor.py``).

* :class:`SerialExecutor` runs in this process (``jobs=1``, the default).
* :class:`DaskExecutor` submits each item as a task to a ``dask.distributed`` client: a local
  cluster it starts itself (``jobs`` workers listening on 127.0.0.1 only, no dashboard), or an
  existing scheduler named by address (``tcp://HOST:PORT``; ``tls://HOST:PORT`` with a
  ``distributed.security.Security`` holding the certificates), or a ``Client`` the caller
  made. A remote scheduler is used only when named: **a Dask scheduler runs whatever code it is
  sent**, and its workers run it with their own permissions, so only name a cluster you trust,
  and use ``tls://`` with certificates beyond one machine.

``dask.distributed`` is imported only when a Dask executor is made (``pip install
'servesim[dask]'``). Runners that sweep or plan take an executor (``sim.plan(...,
executor=...)``); :func:`make_executor` builds one from the command line's ``--jobs`` and
``--scheduler``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

__all__ = ["DaskExecutor", "Executor", "SerialExecutor", "make_executor"]

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs independent tasks."""

    @property
    def workers(self) -> int:
        """Tasks that run at once."""
        ...

    def map(self, fn: Callable[[T], R], items: Sequence[T],
            done: Callable[[int, R], None] | None = None) -> list[R]:
        """``[fn(x) for x in items]``, in item order; ``done(i, result)`` as each finishes."""
        ...

    def close(self) -> None:
        """Release workers and connections this executor started."""
        ...


class SerialExecutor:
    """Every task in this process, one after the other."""

    workers = 1
    """Tasks that run at once."""

    def map(self, fn: Callable[[T], R], items: Sequence[T],
            done: Callable[[int, R], None] | None = None) -> list[R]:
        out = []
        for i, item in enumerate(items):
            out.append(fn(item))
            if done:
                done(i, out[-1])
        return out

    def close(self) -> None:
        return None

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaskExecutor:
    """Tasks on a ``dask.distributed`` cluster (local, named by address, or a given client)."""

    def __init__(self, jobs: int = 2, scheduler: str | None = None, client: Any = None,
                 security: Any = None, timeout_s: float = 60.0) -> None:
        from distributed import Client, LocalCluster

        self._own: list[Any] = []
        if client is not None:
            self.client = client
        elif scheduler is not None:
            self.client = Client(scheduler, security=security, timeout=timeout_s)
            self._own.append(self.client)
        else:
            cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
            self.client = Client(cluster)
            self._own += [self.client, cluster]

    @property
    def workers(self) -> int:
        """Worker threads of the cluster (tasks that run at once)."""
        return max(1, sum(self.client.nthreads().values()))

    def map(self, fn: Callable[[T], R], items: Sequence[T],
            done: Callable[[int, R], None] | None = None) -> list[R]:
        from distributed import as_completed

        if not items:
            return []
        # pure=False: equal items (e.g. the same seed twice) are still separate tasks
        futures = self.client.map(fn, list(items), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[Any] = [None] * len(futures)
        for future in as_completed(futures):
            i = index[future.key]
            out[i] = future.result()
            if done:
                done(i, out[i])
        return out

    def close(self) -> None:
        for thing in self._own:
            thing.close()
        self._own.clear()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(jobs: int = 1, scheduler: str | None = None) -> SerialExecutor | DaskExecutor:
    """``--jobs``/``--scheduler`` to an executor: a named scheduler wins; else one job runs in
    this process and more start a local cluster of that many workers."""
    if scheduler:
        return DaskExecutor(scheduler=scheduler)
    if jobs <= 1:
        return SerialExecutor()
    return DaskExecutor(jobs=jobs)


def flatten(groups: Iterable[Sequence[T]]) -> tuple[list[T], list[int]]:
    """Concatenate groups; also the group sizes, to split results back (:func:`split`)."""
    flat: list[T] = []
    sizes = []
    for g in groups:
        flat.extend(g)
        sizes.append(len(g))
    return flat, sizes


def split(values: Sequence[R], sizes: Sequence[int]) -> list[list[R]]:
    """Inverse of :func:`flatten`."""
    out, at = [], 0
    for n in sizes:
        out.append(list(values[at:at + n]))
        at += n
    return out
