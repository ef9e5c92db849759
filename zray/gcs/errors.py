"""Error codes carried in ``GcsReply(ok=False, payload=(code, message))``.

The GCS never sends a free-form error string alone: every failed reply names
one of these codes, so callers branch on the int and show the message::

    GcsError(Exception)            raised by GcsClient.call on ok=False
        .code    GcsErrorCode
        .message the server's text, naming the problem
"""
from __future__ import annotations

import enum


class GcsErrorCode(enum.IntEnum):
    BAD_REQUEST = 1              # unknown method, wrong arity, wrong argument type
    ACTOR_NAME_TAKEN = 2         # CREATE_ACTOR with a live name and no get_if_exists
    UNKNOWN_ACTOR = 3            # no actor with that id
    NAMED_ACTOR_NOT_FOUND = 4    # GET_NAMED_ACTOR found nothing alive or pending
    INTERNAL = 5                 # the handler itself failed (a GCS bug; logged)


class GcsError(Exception):
    """A GCS request failed; ``code`` is a GcsErrorCode, ``message`` says why."""

    def __init__(self, code: int, message: str):
        try:
            code = GcsErrorCode(code)
        except ValueError:
            pass  # a newer server's code: keep the int
        self.code = code
        self.message = message
        super().__init__(f"{message} (GCS error {int(code)})")
