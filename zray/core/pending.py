"""Request bookkeeping shared by the core worker and its mixins."""

PENDING = object()      # a reply slot that is not filled yet
RPC_TIMEOUT_S = 30.0
