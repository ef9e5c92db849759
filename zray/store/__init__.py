"""zray.store: building blocks of the per-host shared-memory object store.

Pure code, no sockets: the raylet owns one arena file in /dev/shm (create_arena,
prefault_arena), an ArenaAllocator over it and an ObjectTable tracking each object's
state and reader pins; core workers write objects through an ArenaWriter (one
persistent mapping per process) and read them zero-copy through map_readonly.  An
object's bytes are a pickle protocol 5 stream plus out-of-band buffers, laid out by
zray.store.layout.
"""

from zray.store.arena import ArenaAllocator
from zray.store.errors import (
    CorruptObjectError,
    ObjectExistsError,
    ObjectStateError,
    StoreError,
    UnknownObjectError,
)
from zray.store.layout import ALIGN, encode_to_bytes, encoded_size, read_object, write_object
from zray.store.object_table import ObjectInfo, ObjectState, ObjectTable
from zray.store.shm import (
    ArenaWriter,
    close_readonly_fds,
    create_arena,
    destroy_arena,
    map_readonly,
    prefault_arena,
)

__all__ = [
    "ALIGN",
    "ArenaAllocator",
    "ArenaWriter",
    "CorruptObjectError",
    "ObjectExistsError",
    "ObjectInfo",
    "ObjectState",
    "ObjectStateError",
    "ObjectTable",
    "StoreError",
    "UnknownObjectError",
    "close_readonly_fds",
    "create_arena",
    "destroy_arena",
    "encode_to_bytes",
    "encoded_size",
    "map_readonly",
    "prefault_arena",
    "read_object",
    "write_object",
]
