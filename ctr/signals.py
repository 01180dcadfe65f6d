"""ctr's own signal handling: what it forwards to the process it runs in the
foreground (a container's init, QEMU, an exec), and the reset a child does
before it execs the command."""

import signal

from ctr.errors import CtrError

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)


class SignalForwarder:
    """Forwards the signals ctr receives to the process it runs in the foreground.

    Installed before the process exists, so that a signal arriving during the
    start is not lost (nor kills ctr): it is queued and delivered once the
    process is known. The process is any ctr.drivers.ProcessHandle.
    """

    def __init__(self, signals=FORWARDED, translate=None):
        self.proc = None
        self.pending = []
        self.translate = translate or {}  # {received: sent}: SIGTERM -> the stop signal
        for sig in signals:
            signal.signal(sig, self._handle)

    def _handle(self, sig, _frame):
        sig = self.translate.get(sig, sig)
        if self.proc is None:
            self.pending.append(sig)
        else:
            self._send(sig)

    def _send(self, sig):
        try:
            self.proc.send_signal(sig)
        except (ProcessLookupError, CtrError):
            pass

    def attach(self, proc):
        self.proc = proc
        while self.pending:
            self._send(self.pending.pop(0))


def reset_signals():
    """What Python changed at start-up (SIGPIPE and SIGXFSZ ignored, handlers for
    SIGINT) and ctr's own handlers must not leak into the command: ignored
    dispositions survive execve."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE,
                signal.SIGXFSZ, signal.SIGWINCH, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
