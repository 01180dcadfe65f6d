"""The host's side of the VM agent's protocol (ctr/vm/agent.py), against a
socketpair standing in for agent.c: frames, an exec session's relaying, its
exit status and failures."""

import os
import socket
import struct
import threading

import pytest

from ctr.errors import StartError
from ctr.vm import agent


def test_frame_layout():
    assert agent.frame(b"E", b"abc") == b"E\x00\x00\x00\x03abc"
    assert agent.frame(b"C") == b"C\x00\x00\x00\x00"
    big = b"x" * 70000
    assert agent.frame(b"O", big)[1:5] == struct.pack(">I", 70000)


def test_split_frame_waits_for_a_whole_frame():
    data = agent.frame(b"O", b"hello") + agent.frame(b"X", b"0")
    for cut in range(len(agent.frame(b"O", b"hello"))):
        assert agent.split_frame(data[:cut]) is None
    kind, payload, rest = agent.split_frame(data)
    assert (kind, payload) == (b"O", b"hello")
    assert agent.split_frame(rest) == (b"X", b"0", b"")


def read_frames(sock, n):
    """n frames from the host's side, as the guest reads them."""
    buf, out = b"", []
    while len(out) < n:
        whole = agent.split_frame(buf)
        if whole is None:
            chunk = sock.recv(65536)
            assert chunk, "the host closed the session early"
            buf += chunk
            continue
        kind, payload, buf = whole
        out.append((kind, payload))
    return out


@pytest.fixture
def pair():
    host, guest = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield host, guest
    for s in (host, guest):
        s.close()


@pytest.fixture
def outputs():
    """Pipes for the session's stdout and stderr: (fds, read back)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()

    def collected():
        os.close(out_w)
        os.close(err_w)
        with os.fdopen(out_r, "rb") as o, os.fdopen(err_r, "rb") as e:
            return o.read(), e.read()

    yield (out_w, err_w), collected


def test_a_session_sends_its_config_and_relays_output(pair, outputs):
    host, guest = pair
    (out_w, err_w), collected = outputs
    session = agent.AgentSession(host, b"0\0" b"0\0" b"/\0" b"1\0" b"true\0", "vm1")
    assert session.pid is None and session.master is None
    assert read_frames(guest, 1) == [(b"E", b"0\0" b"0\0" b"/\0" b"1\0" b"true\0")]
    stream = (agent.frame(b"O", b"out 1\n") + agent.frame(b"R", b"err\n")
              + agent.frame(b"O", b"out 2\n") + agent.frame(b"X", b"3"))
    for i in range(len(stream)):  # one byte at a time: frames split anywhere
        guest.sendall(stream[i:i + 1])
    assert session.wait(stdin=None, stdout=out_w, stderr=err_w) == 3
    assert collected() == (b"out 1\nout 2\n", b"err\n")
    assert host.fileno() == -1  # wait() closed the session


def test_stdin_is_relayed_then_closed(pair, outputs):
    host, guest = pair
    (out_w, err_w), _ = outputs
    in_r, in_w = os.pipe()
    session = agent.AgentSession(host, b"cfg", "vm1")
    got = []

    def guest_side():
        got.extend(read_frames(guest, 3))
        guest.sendall(agent.frame(b"X", b"0"))

    t = threading.Thread(target=guest_side)
    t.start()
    os.write(in_w, b"typed\n")
    os.close(in_w)
    try:
        assert session.wait(stdin=in_r, stdout=out_w, stderr=err_w) == 0
    finally:
        t.join(5)
        os.close(in_r)
    assert got == [(b"E", b"cfg"), (b"I", b"typed\n"), (b"C", b"")]


def test_signals_go_as_frames(pair):
    host, guest = pair
    session = agent.AgentSession(host, b"cfg", "vm1")
    session.send_signal(15)
    assert read_frames(guest, 2) == [(b"E", b"cfg"), (b"K", b"15")]
    host.close()
    session.send_signal(9)  # a session that went away takes no signal, quietly


def test_a_command_that_could_not_run(pair, outputs):
    host, guest = pair
    (out_w, err_w), _ = outputs
    session = agent.AgentSession(host, b"cfg", "vm1")
    guest.sendall(agent.frame(b"X", b"127 nosuch: executable file not found in $PATH"))
    with pytest.raises(StartError, match=r"exec in vm1: nosuch: executable file not found") \
            as err:
        session.wait(stdin=None, stdout=out_w, stderr=err_w)
    assert err.value.exit_code == 127


def test_a_vm_that_goes_away(pair, outputs):
    host, guest = pair
    (out_w, err_w), _ = outputs
    session = agent.AgentSession(host, b"cfg", "vm1")
    read_frames(guest, 1)
    guest.sendall(agent.frame(b"O", b"partial")[:4])
    guest.close()
    with pytest.raises(StartError, match="exec in vm1: the VM went away"):
        session.wait(stdin=None, stdout=out_w, stderr=err_w)


def test_connect_reaches_a_socket_of_a_long_run_directory(tmp_path):
    run = tmp_path / ("d" * 100) / "vm"
    run.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dirfd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    try:
        server.bind(f"/proc/self/fd/{dirfd}/ctl.sock")
    finally:
        os.close(dirfd)
    server.listen(1)
    try:
        with agent.connect(str(run), "ctl.sock") as sock:
            peer, _ = server.accept()
            sock.sendall(b"ping")
            assert peer.recv(4) == b"ping"
            peer.close()
        with pytest.raises(OSError):
            agent.connect(str(run), "agent.sock")
    finally:
        server.close()
