"""QMP, QEMU's monitor protocol: JSON lines over the instance's qmp socket.

    greeting -> qmp_capabilities -> {"execute": ...} -> {"return": ...} | {"error": ...}

Asynchronous events arriving in between are skipped.
"""

import json
import socket

from ctr.errors import CtrError


class QmpError(CtrError):
    pass


class Qmp:
    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as err:
            self.sock.close()
            raise QmpError(f"QMP: cannot connect: {err.strerror or err}") from None
        self.reader = self.sock.makefile("rb")
        try:
            self._read()  # the greeting
            self.execute("qmp_capabilities")
        except BaseException:
            self.close()
            raise

    def _read(self):
        try:
            line = self.reader.readline()
        except OSError as err:
            raise QmpError(f"QMP: {err}") from None
        if not line:
            raise QmpError("QMP: QEMU closed the connection")
        return json.loads(line)

    def execute(self, command, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as err:
            raise QmpError(f"QMP {command}: {err.strerror or err}") from None
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QmpError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")

    def close(self):
        self.reader.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
