"""Ray's ``ray._private`` names that user programs reach for (internal_api)."""
from . import internal_api  # noqa: F401
