"""The one per-process handle the public API needs: this process's CoreWorker.

Set by ``zray.init`` in a driver and by the worker entry point in workers;
nothing else in zray keeps process globals.
"""
from __future__ import annotations

import contextvars

worker = None  # zray.core.core_worker.CoreWorker | None


def require_worker():
    if worker is None:
        raise RuntimeError("zray is not initialized: call zray.init() first")
    return worker


# What runs now in this thread / asyncio task (a core_worker.TaskContext).
current_task = contextvars.ContextVar("zray_current_task", default=None)
