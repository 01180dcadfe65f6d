"""Terminals: the pty of `-t`, relayed to ctr's own stdin/stdout."""

import contextlib
import errno
import fcntl
import os
import select
import signal
import struct
import termios


def copy_winsize(src_fd, dst_fd):
    try:
        size = fcntl.ioctl(src_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(dst_fd, termios.TIOCSWINSZ, size)
    except OSError:
        pass


@contextlib.contextmanager
def raw_mode(fd):
    """Put the user's terminal in raw mode for the session, and restore it."""
    if not os.isatty(fd):
        yield
        return
    import tty

    old = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, old)


def relay(master, stdin=0, stdout=1):
    """Copy stdin -> master and master -> stdout until the container side closes.

    Returns when every process holding the slave has gone (read gives EIO).
    stdin=None (a detached instance): only the output is copied, and the
    terminal never sees an end of input.
    """
    copy_winsize(stdout, master)
    old = signal.signal(signal.SIGWINCH, lambda *_: copy_winsize(stdout, master))
    readers = [master]
    try:
        if stdin is not None:
            os.fstat(stdin)
            readers.append(stdin)
    except OSError:
        pass
    try:
        with raw_mode(stdin) if stdin is not None else contextlib.nullcontext():
            while True:
                ready, _, _ = select.select(readers, [], [])
                if master in ready:
                    try:
                        data = os.read(master, 65536)
                    except OSError as err:
                        if err.errno == errno.EIO:
                            return
                        raise
                    if not data:
                        return
                    _write_all(stdout, data)
                if stdin in ready:
                    data = os.read(stdin, 65536)
                    if data:
                        _write_all(master, data)
                    else:
                        readers.remove(stdin)
                        # End of input: the terminal's EOF character, as a user would type.
                        _write_all(master, bytes([termios.tcgetattr(master)[6][termios.VEOF]]))
    finally:
        signal.signal(signal.SIGWINCH, old)


def _write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]
