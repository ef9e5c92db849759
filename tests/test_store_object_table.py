"""Tests for zray.store.object_table.ObjectTable: object lifecycle and reader pins."""

import pytest

from zray.store.arena import ArenaAllocator
from zray.store.errors import ObjectExistsError, ObjectStateError, UnknownObjectError
from zray.store.object_table import ObjectState, ObjectTable

U = 4096


@pytest.fixture
def table():
    return ObjectTable(ArenaAllocator(16 * U))


def test_create_seal_read_delete(table):
    off = table.create(b"obj1", 5000)
    assert off == 0
    assert table.contains(b"obj1") and not table.is_sealed(b"obj1")
    assert table.pin_reader(b"obj1") is None  # not readable before seal
    table.seal(b"obj1")
    assert table.is_sealed(b"obj1")
    assert table.pin_reader(b"obj1") == (0, 5000)
    info = table.info(b"obj1")
    assert (info.size, info.offset, info.state, info.readers) == (5000, 0, ObjectState.SEALED, 1)
    table.release_reader(b"obj1")
    table.delete(b"obj1")
    assert not table.contains(b"obj1")
    assert table.stats()["used_bytes"] == 0


def test_create_existing_id_raises(table):
    table.create(b"a", 10)
    with pytest.raises(ObjectExistsError):
        table.create(b"a", 10)


def test_create_returns_none_when_there_is_no_room(table):
    assert table.create(b"big", 12 * U) == 0
    assert table.create(b"too-big", 5 * U) is None
    assert not table.contains(b"too-big")
    table.seal(b"big")
    table.delete(b"big")
    assert table.create(b"too-big", 5 * U) == 0


def test_delete_with_readers_is_pending_until_last_release(table):
    table.create(b"x", U)
    table.seal(b"x")
    table.pin_reader(b"x")
    table.pin_reader(b"x")
    table.delete(b"x")
    info = table.info(b"x")
    assert info.pending_delete and info.readers == 2
    assert not table.contains(b"x")
    assert table.pin_reader(b"x") is None  # no new readers of a deleted object
    assert table.stats()["used_bytes"] == U  # bytes still held for the readers
    with pytest.raises(ObjectExistsError):
        table.create(b"x", U)
    table.release_reader(b"x")
    assert table.stats()["used_bytes"] == U
    table.release_reader(b"x")
    assert table.stats() == {
        "used_bytes": 0,
        "capacity": 16 * U,
        "num_objects": 0,
        "num_pinned_by_readers": 0,
        "free_bytes": 16 * U,
        "largest_free_block": 16 * U,
    }
    assert table.create(b"x", U) == 0


def test_delete_while_being_written_frees_at_seal(table):
    table.create(b"w", U)
    table.delete(b"w")
    assert table.info(b"w").pending_delete
    assert table.stats()["used_bytes"] == U  # the creator may still be writing
    table.seal(b"w")
    assert len(table) == 0 and table.stats()["used_bytes"] == 0


def test_abort_frees_created_object(table):
    table.create(b"a", 3 * U)
    table.abort(b"a")
    assert not table.contains(b"a")
    assert table.stats()["used_bytes"] == 0
    table.create(b"b", U)
    table.seal(b"b")
    with pytest.raises(ObjectStateError):
        table.abort(b"b")


def test_state_errors(table):
    with pytest.raises(UnknownObjectError):
        table.seal(b"nope")
    with pytest.raises(UnknownObjectError):
        table.abort(b"nope")
    with pytest.raises(UnknownObjectError):
        table.info(b"nope")
    with pytest.raises(UnknownObjectError):
        table.release_reader(b"nope")
    table.create(b"s", 1)
    table.seal(b"s")
    with pytest.raises(ObjectStateError):
        table.seal(b"s")
    with pytest.raises(UnknownObjectError, match="no reader pins"):
        table.release_reader(b"s")
    assert table.pin_reader(b"unknown") is None
    table.delete(b"unknown")  # no-op


def test_stats_and_objects_listing(table):
    table.create(b"a", 100)
    table.create(b"b", U + 1)
    table.seal(b"b")
    table.pin_reader(b"b")
    table.pin_reader(b"b")
    stats = table.stats()
    assert stats["used_bytes"] == 3 * U
    assert stats["num_objects"] == 2
    assert stats["num_pinned_by_readers"] == 1
    listing = dict(table.objects())
    assert listing[b"a"].state is ObjectState.CREATED and listing[b"a"].size == 100
    assert listing[b"b"].readers == 2 and listing[b"b"].offset == U
