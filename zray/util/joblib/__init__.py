"""A joblib backend on zray (Ray's ``ray.util.joblib``)::

    from joblib import Parallel, delayed, parallel_backend
    from zray.util.joblib import register_ray
    register_ray()
    with parallel_backend("ray"):
        Parallel()(delayed(f)(i) for i in range(100))

joblib is not a zray dependency: install it to use this.
"""


def register_ray() -> None:
    """Register the backend as joblib's ``"ray"``."""
    try:
        from joblib.parallel import register_parallel_backend
        from .ray_backend import RayBackend
    except ImportError:
        raise ImportError("To use the ray backend of joblib you must install joblib "
                          "(pip install joblib).") from None
    register_parallel_backend("ray", RayBackend)


__all__ = ["register_ray"]
