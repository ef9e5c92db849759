"""Shared fixtures for the public-API tests, which run against REAL processes:
``zray.init()`` starts a GCS, a raylet, a fork server and forked workers.

* ``cluster``: a cluster shared by the tests of one module.  A module sets its
  shape with ``CLUSTER = dict(num_cpus=2, ...)``; a test that needs another
  shape (or a fresh cluster) says so with ``@pytest.mark.cluster(num_cpus=1)``
  / ``@pytest.mark.cluster(fresh=True)``, and the module's shape comes back
  for the next test that asks for it.  Whatever was started is shut down at
  the end of the module.
* ``wait_for(predicate, timeout, what)``: poll until true, fail at the deadline
  (tests wait on events with deadlines, never on timing assertions).
* ``Barrier``: an actor that holds callers until ``parties`` of them arrived,
  used to prove that things run at the same time.
"""
from __future__ import annotations

import contextlib
import os
import time

import psutil
import pytest

import zray

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

# Test modules define the remote functions and classes; workers import them by
# module name (cloudpickle pickles importable functions by reference), so the
# tests directory must be on the workers' path, as for any Ray program whose
# code lives outside the driver's script directory.
_pythonpath = os.environ.get("PYTHONPATH", "")
if TESTS_DIR not in _pythonpath.split(os.pathsep):
    os.environ["PYTHONPATH"] = TESTS_DIR + (os.pathsep + _pythonpath if _pythonpath else "")

DEFAULT_CLUSTER = {"num_cpus": 2}


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster(fresh=False, **init_kwargs): the cluster shape "
                                       "(zray.init keywords) this test needs")


class _ClusterManager:
    """Keeps at most one embedded cluster alive, re-initialising only when the
    requested shape differs (init costs ~0.5 s, shutdown ~0.5 s)."""

    def __init__(self):
        self.kwargs = None

    def ensure(self, kwargs: dict, fresh: bool = False) -> None:
        if zray.is_initialized() and self.kwargs == kwargs and not fresh:
            return
        self.stop()
        zray.init(**kwargs)
        self.kwargs = dict(kwargs)

    def stop(self) -> None:
        if zray.is_initialized():
            zray.shutdown()
        self.kwargs = None


_clusters = _ClusterManager()


@pytest.fixture(scope="module")
def _module_clusters():
    yield _clusters
    _clusters.stop()


@pytest.fixture
def cluster(request, _module_clusters):
    """An initialised zray for this test (see the module docstring)."""
    kwargs = dict(getattr(request.module, "CLUSTER", DEFAULT_CLUSTER))
    fresh = False
    marker = request.node.get_closest_marker("cluster")
    if marker is not None:
        kwargs = dict(marker.kwargs)
        fresh = kwargs.pop("fresh", False)
        if not kwargs:
            kwargs = dict(getattr(request.module, "CLUSTER", DEFAULT_CLUSTER))
    _module_clusters.ensure(kwargs, fresh)
    yield zray


@pytest.fixture
def no_cluster(_module_clusters):
    """No zray running before the test; whatever the test starts is shut down after."""
    _module_clusters.stop()
    yield
    if zray.is_initialized():
        zray.shutdown()


def pid_running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an exited child not yet reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(predicate, timeout: float = 10.0, what: str = "condition", interval: float = 0.02):
    """Poll ``predicate`` until it returns a truthy value, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@zray.remote(num_cpus=0)
class Barrier:
    """``arrive()`` returns once ``parties`` callers have arrived (async actor,
    so waiting callers do not block the others)."""

    def __init__(self, parties: int):
        import asyncio
        self.parties = parties
        self.count = 0
        self.event = asyncio.Event()

    async def arrive(self, timeout: float = 30.0):
        import asyncio
        self.count += 1
        if self.count >= self.parties:
            self.event.set()
        await asyncio.wait_for(self.event.wait(), timeout)
        return self.count

    async def arrived(self):
        return self.count


@zray.remote(num_cpus=0)
class Signal:
    """An event across processes: ``wait()`` returns once ``send()`` was called."""

    def __init__(self):
        import asyncio
        self.event = asyncio.Event()
        self.waiters = 0

    async def send(self):
        self.event.set()

    async def wait(self):
        self.waiters += 1
        await self.event.wait()

    async def num_waiters(self):
        return self.waiters


@contextlib.contextmanager
def small_store_cluster(store_mb: int, full_timeout_s: float):
    """A one-CPU cluster with a small object store (memory-pressure tests)."""
    zray.init(num_cpus=1, object_store_memory=store_mb << 20,
              _system_config={"object_store_full_timeout_s": full_timeout_s})
    try:
        yield
    finally:
        zray.shutdown()
