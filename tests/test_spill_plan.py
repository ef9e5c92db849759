"""The choice of objects to spill for one free block (zray.node.spill_plan), on its own."""
from zray.node.spill_plan import Span, choose

MB = 1 << 20


def _spans(*layout):
    """('a', 0, 10, True), ... in MB -> Spans."""
    return [Span(start * MB, end * MB, name.encode(), movable) for name, start, end, movable in layout]


def test_a_large_enough_gap_needs_no_spill_but_split_gaps_do():
    spans = _spans(("a", 0, 20, True), ("b", 40, 60, True), ("c", 80, 100, True))
    # 40 MB free in two 20 MB gaps: 30 MB needs one object out, the cheapest window.
    assert choose(spans, 100 * MB, 30 * MB) in ([b"a"], [b"b"], [b"c"])
    assert choose(spans, 100 * MB, 60 * MB) == [b"b"]          # 20..80 with b out
    assert choose(spans, 100 * MB, 61 * MB) in ([b"a", b"b"], [b"b", b"c"])


def test_objects_that_cannot_move_are_walls():
    spans = _spans(("pinned", 40, 60, False), ("a", 0, 20, True), ("b", 60, 70, True))
    assert choose(spans, 100 * MB, 40 * MB) == [b"b"]          # 60..100 once b is out
    assert choose(spans, 100 * MB, 41 * MB) is None            # no window that large
    assert choose(_spans(("pinned", 0, 100, False)), 100 * MB, 1) is None


def test_the_cheapest_window_wins():
    spans = _spans(("big", 0, 50, True), ("small", 60, 65, True), ("wall", 90, 100, False))
    assert choose(spans, 100 * MB, 30 * MB) == [b"small"]      # 50..90 for 5 MB spilled
