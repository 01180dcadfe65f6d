"""Isolation probes: shell files in ctr/bench/probes, run inside an instance with
`ctr exec`, each ending with a line `verdict: isolated|exposed`.

A probe file starts with a header of `# key: value` lines:
  probe               its name (the file's name without .sh)
  question            what it asks, for people
  exposed-by-design   kinds for which exposure is the documented contract
  harness             cpu: the harness measures the instance's CPU usage around it

The host side of a probe lives here: the facts the probes compare against (the
host's kernel and boot id, a marker process, a marker file, a TCP listener, the
host's disk), handed to them as environment variables.
"""

import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources

ISOLATED, EXPOSED, ERROR = "isolated", "exposed", "error"
VERDICT_RE = re.compile(r"^verdict: (isolated|exposed)\s*$")
HEADER_RE = re.compile(r"^#\s*([a-z-]+):\s*(.*?)\s*$")


@dataclass(frozen=True)
class Probe:
    name: str
    question: str
    text: str
    exposed_by_design: tuple = ()
    harness: str = ""


def _probe_files():
    return resources.files("ctr.bench") / "probes"


def parse(name, text):
    """A probe from its file's text: the header lines until the first other line."""
    header = {}
    for line in text.splitlines():
        m = HEADER_RE.match(line)
        if not m:
            break
        header[m.group(1)] = m.group(2)
    by_design = tuple(k.strip() for k in header.get("exposed-by-design", "").split(",")
                      if k.strip())
    return Probe(name=header.get("probe", name), question=header.get("question", name),
                 text=text, exposed_by_design=by_design, harness=header.get("harness", ""))


def load():
    """Every probe, by name, and the prelude they all run after."""
    folder = _probe_files()
    prelude = (folder / "lib.sh").read_text()
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sh") and entry.name != "lib.sh":
            found.append(parse(entry.name[:-3], entry.read_text()))
    return prelude, found


def script(prelude, probe):
    """The text for `sh -c`: stderr joins stdout, so evidence stays in order."""
    return f"exec 2>&1\n{prelude}\n{probe.text}\n"


def verdict(output):
    """(result, evidence) from a probe's output: the verdict is its last verdict
    line; output without one is an error, with the output as evidence."""
    lines = [line for line in output.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        m = VERDICT_RE.match(lines[i])
        if m:
            return m.group(1), "\n".join(lines[:i])
    return ERROR, "\n".join(lines) or "no output"


# -- the host side --------------------------------------------------------------


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def host_block_device(sys_block="/sys/block"):
    """MAJOR:MINOR of the first real disk (a device behind it, nonzero size)."""
    try:
        names = sorted(os.listdir(sys_block))
    except OSError:
        return "8:0"
    for name in names:
        base = os.path.join(sys_block, name)
        if not os.path.exists(os.path.join(base, "device")):
            continue  # loop, ram, zram, dm: not a disk of the host's own
        if _read(os.path.join(base, "size"), "0") not in ("", "0"):
            return _read(os.path.join(base, "dev"), "8:0")
    return "8:0"


def host_addresses():
    """The host's IPv4 addresses a probe tries to reach, loopback first."""
    addrs = ["127.0.0.1"]
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            addr = parts[parts.index("inet") + 1].split("/")[0]
            if addr not in addrs:
                addrs.append(addr)
    return addrs


class HostSide:
    """What the probes look for from inside: made on enter, all gone on exit."""

    def __init__(self):
        self.token = f"ctr-bench-marker-{secrets.token_hex(8)}"
        self.tmpdir = None
        self.marker = None
        self.listener = None
        self._thread = None

    def __enter__(self):
        try:
            self.tmpdir = tempfile.mkdtemp(prefix="ctr-bench-probes-")
            self.file = os.path.join(self.tmpdir, "marker")
            with open(self.file, "w") as f:
                f.write(self.token + "\n")
            # A process whose argv carries the token: argv[0] is free to choose.
            # Ctrl-C between its fork and the assignment would leave it running
            # with nobody to kill it: SIGINT and SIGTERM wait until it is ours
            # (the marker inherits the mask; it only ever gets SIGKILL).
            held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                self.marker = subprocess.Popen(
                    [self.token, "3600"], executable=shutil.which("sleep"),
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
            self.listener = socket.create_server(("0.0.0.0", 0))
            self.listener.settimeout(0.5)
            self._thread = threading.Thread(target=self._serve, daemon=True)
            self._thread.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _serve(self):
        while self.listener is not None:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(f"{self.token}\n".encode())
                except OSError:
                    pass

    def __exit__(self, *exc):
        if self.listener is not None:
            listener, self.listener = self.listener, None
            listener.close()
            if self._thread:
                self._thread.join(timeout=2)
        if self.marker is not None:
            self.marker.kill()
            self.marker.wait()
            self.marker = None
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        return False

    def env(self, memory, pids_limit, cpus):
        """The facts, as K=V pairs for `ctr exec -e`."""
        return {
            "HOST_KERNEL": platform.release(),
            "HOST_BOOT_ID": _read("/proc/sys/kernel/random/boot_id"),
            "HOST_MARKER": self.token,
            "HOST_FILE": self.file,
            "HOST_PORT": str(self.listener.getsockname()[1]),
            "HOST_ADDRS": " ".join(host_addresses()),
            "HOST_BLOCK": host_block_device(),
            "MEMORY": str(memory),
            "PIDS_LIMIT": str(pids_limit),
            "CPUS": str(cpus),
        }
