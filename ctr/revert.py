"""One reverter for multi-step set-ups (Incus's `revert`, on contextlib.ExitStack).

    with Reverter() as revert:
        cg = cgroup.create()
        revert.add(cg.destroy)
        ...
        revert.success()          # keep everything; without it, undo in reverse

On any exit without `success()` (an exception, a BaseException such as
KeyboardInterrupt, or a plain return) the undo steps run in reverse order. A
step that fails does not stop the others, and never hides the error that caused
the revert: the first such error is what propagates, the steps' own failures are
attached to it as notes.
"""

import contextlib


class Reverter:
    def __init__(self):
        self._stack = contextlib.ExitStack()
        self.errors = []

    def add(self, fn, *args, **kwargs):
        """Register an undo step: called as fn(*args, **kwargs) on revert."""

        def step():
            try:
                fn(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - an undo step must not stop the others
                self.errors.append(err)

        self._stack.callback(step)
        return fn

    def success(self):
        """Keep what was done: the undo steps are dropped."""
        self._stack.pop_all()

    def fail(self):
        """Undo now, in reverse order."""
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.fail()
        if exc is not None:
            for err in self.errors:
                exc.add_note(f"while undoing: {err}")
        return False
