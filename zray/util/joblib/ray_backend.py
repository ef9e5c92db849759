"""joblib's multiprocessing backend with zray's Pool (zray/util/multiprocessing)
as its pool: each joblib batch runs in one of the pool's actors."""
from __future__ import annotations

from typing import Any, Dict, Optional

from joblib._parallel_backends import FallbackToBackend, MultiprocessingBackend, SequentialBackend

import zray
from ..multiprocessing.pool import Pool


class RayBackend(MultiprocessingBackend):
    """``ray_remote_args`` are the pool actors' options (e.g. ``{"num_cpus": 2}``),
    given to ``parallel_backend("ray", ray_remote_args=...)`` or to ``Parallel``."""

    def __init__(self, nesting_level: Optional[int] = None,
                 inner_max_num_threads: Optional[int] = None,
                 ray_remote_args: Optional[Dict[str, Any]] = None, **kwargs):
        self.ray_remote_args = ray_remote_args
        super().__init__(nesting_level=nesting_level,
                         inner_max_num_threads=inner_max_num_threads, **kwargs)

    def effective_n_jobs(self, n_jobs):
        if n_jobs == -1:   # every CPU of the cluster (starting zray if needed), as Ray's
            if not zray.is_initialized():
                zray.init()
            return int(zray.cluster_resources().get("CPU", 1))
        return super().effective_n_jobs(n_jobs)

    def configure(self, n_jobs: int = 1, parallel=None, prefer: Optional[str] = None,
                  require: Optional[str] = None,
                  ray_remote_args: Optional[Dict[str, Any]] = None, **pool_kwargs):
        n_jobs = self.effective_n_jobs(n_jobs)
        if n_jobs == 1:
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        # joblib's memmapping options (temp folders for numpy arguments) mean
        # nothing here: large arrays travel through the object store.
        remote_args = ray_remote_args if ray_remote_args is not None else self.ray_remote_args
        self._pool = Pool(processes=n_jobs, ray_remote_args=remote_args)
        self.parallel = parallel
        return n_jobs
