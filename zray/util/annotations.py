"""Ray's API annotations that programs touch: ``RayDeprecationWarning`` (what
deprecated calls warn with) and the helper that issues it."""
from __future__ import annotations

import warnings


class RayDeprecationWarning(DeprecationWarning):
    """A deprecated zray (Ray) API was used."""


def warn_deprecated(message: str, stacklevel: int = 3) -> None:
    warnings.warn("This API is deprecated and may be removed in future Ray releases. You "
                  "could suppress this warning by setting env variable "
                  f'PYTHONWARNINGS="ignore::DeprecationWarning"\n{message}',
                  RayDeprecationWarning, stacklevel=stacklevel)
