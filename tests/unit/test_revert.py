"""The reverter: undo in reverse unless success(); undo failures never hide the cause."""

import pytest

from ctr.revert import Reverter


def test_success_keeps_everything():
    done = []
    with Reverter() as revert:
        revert.add(done.append, "a")
        revert.success()
    assert done == []


def test_undo_in_reverse_on_error_and_the_cause_propagates():
    done = []
    with pytest.raises(ValueError, match="cause"), Reverter() as revert:
        revert.add(done.append, 1)
        revert.add(done.append, 2)
        raise ValueError("cause")
    assert done == [2, 1]


def test_return_without_success_reverts():
    done = []

    def setup():
        with Reverter() as revert:
            revert.add(done.append, "x")
            return "early"

    assert setup() == "early"
    assert done == ["x"]


def test_a_failing_step_runs_the_others_and_is_a_note():
    done = []

    def broken():
        raise OSError(16, "busy")

    with pytest.raises(KeyError) as info, Reverter() as revert:
        revert.add(done.append, 1)
        revert.add(broken)
        revert.add(done.append, 3)
        raise KeyError("cause")
    assert done == [3, 1]
    assert any("busy" in note for note in info.value.__notes__)


def test_keyboard_interrupt_reverts():
    done = []
    with pytest.raises(KeyboardInterrupt), Reverter() as revert:
        revert.add(done.append, 1)
        raise KeyboardInterrupt
    assert done == [1]
