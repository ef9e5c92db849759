"""The wire layer: round trips, and malformed frames rejected before use."""
import pickle

import pytest

from zray.sockets import messages as m


def test_every_message_round_trips():
    for tag, cls in m._CLASSES.items():
        fields = tuple(range(len(cls._fields)))
        msg = cls(*fields)
        decoded = m.decode(m.encode(msg))
        assert type(decoded) is cls and decoded == msg and decoded.TAG == tag


@pytest.mark.parametrize("frame", [
    b"", b"\xa7", b"\x00\x28" + pickle.dumps((1,)),            # empty, short, bad magic
    bytes((m.MAGIC, 250)) + pickle.dumps(()),                  # unknown tag
    bytes((m.MAGIC, int(m.MsgType.PUSH_TASK))) + b"\x80\x05garbage",   # broken pickle
    bytes((m.MAGIC, int(m.MsgType.PUSH_TASK))) + pickle.dumps((1, 2)),  # wrong arity
    bytes((m.MAGIC, int(m.MsgType.PUSH_TASK))) + pickle.dumps([1]),     # not a tuple
])
def test_malformed_frames_raise_malformed_message(frame):
    with pytest.raises(m.MalformedMessage):
        m.decode(frame)


def test_every_message_name_the_code_uses_is_defined():
    """The definitions live in three modules (by who talks) and messages.py
    re-exports them: every ``m.Name`` the code refers to must be there."""
    import pathlib
    import re
    from zray.sockets import messages
    root = pathlib.Path(messages.__file__).resolve().parents[1]
    used = set()
    for path in root.rglob("*.py"):
        text = path.read_text()
        if "messages as m" in text:
            used.update(re.findall(r"\bm\.([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used and not sorted(name for name in used if not hasattr(messages, name))
