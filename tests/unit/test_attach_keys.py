"""ctr.attach's detach keys: docker's --detach-keys form, and the sequence
spotted across reads without sending it."""

import pytest

from ctr.attach import DetachKeys, parse_detach_keys
from ctr.errors import InvalidSpec


def test_parse():
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    assert parse_detach_keys("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_") == bytes(
        [0, 27, 28, 29, 30, 31])
    for bad in ("ctrl-1", "meta-q", "ctrl-p,,", "ab", "é"):
        with pytest.raises(InvalidSpec):
            parse_detach_keys(bad)


def test_spotted_across_reads_and_never_sent():
    keys = DetachKeys(b"\x10\x11")
    assert keys.feed(b"ab\x10") == (b"ab", False)
    assert keys.feed(b"c") == (b"\x10c", False)  # not the sequence: sent after all
    assert keys.feed(b"\x10\x10") == (b"\x10", False)
    assert keys.feed(b"\x11rest") == (b"", True)
