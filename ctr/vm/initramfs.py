"""The guest's initramfs: a base archive per kernel, and a small one per start.

The base (cached beside the kernel, rebuilt when the agent or the modules
change) holds ctr-agent as /init and the kernel's modules: no shell, no busybox
(the image brings its own). The per-start archive holds /ctr/: the command and
its environment, the network, the hostname and /etc files. The kernel unpacks
concatenated cpio archives in order, so the instance's initrd is the two
written one after the other: no kernel command line to encode the command on
(it is short, and drops parameters with dots).
"""

import hashlib
import os
import shutil
import stat

from ctr.errors import CtrError

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT = os.path.join(HERE, "ctr-agent")


class Cpio:
    """A writer of the "newc" format the kernel unpacks."""

    def __init__(self, f):
        self.f = f
        self.ino = 0

    def _entry(self, name, mode, data=b"", rdev=(0, 0)):
        self.ino += 1
        name_b = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0)
        head = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.f.write(head + name_b)
        self.f.write(b"\0" * (-(len(head) + len(name_b)) % 4))
        self.f.write(data)
        self.f.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name, data, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def copy(self, name, path, mode=None):
        with open(path, "rb") as src:
            data = src.read()
        self.file(name, data, mode if mode is not None else os.stat(path).st_mode & 0o7777)

    def chardev(self, name, major, minor, mode=0o600):
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def close(self):
        self._entry("TRAILER!!!", 0)


def _digest(kernel):
    h = hashlib.sha256()
    for path in (AGENT, *kernel.modules, *kernel.net_modules):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def base(kernel, cache):
    """The base archive for `kernel`, built once into `cache`."""
    if not os.path.isfile(AGENT):
        raise CtrError(f"the VM initramfs needs ctr's guest agent ({AGENT} is missing)")
    path = os.path.join(cache, f"initramfs-{_digest(kernel)}.cpio")
    if os.path.exists(path):
        return path
    os.makedirs(cache, exist_ok=True)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "wb") as f:
        c = Cpio(f)
        for d in ("dev", "proc", "sys", "newroot", "ctr", "lib", "lib/ctr"):
            c.dir(d)
        c.chardev("dev/console", 5, 1)
        c.copy("init", AGENT, 0o755)
        for mod in kernel.modules + kernel.net_modules:
            c.copy(f"lib/ctr/{os.path.basename(mod)}", mod, 0o644)
        for listing, mods in (("modules", kernel.modules), ("modules.net", kernel.net_modules)):
            c.file(f"ctr/{listing}", "".join(os.path.basename(m) + "\n"
                                             for m in mods).encode())
        c.close()
    os.replace(tmp, path)
    for old in os.listdir(cache):
        if old.startswith("initramfs-") and os.path.join(cache, old) != path:
            try:
                os.unlink(os.path.join(cache, old))
            except FileNotFoundError:
                pass
    return path


def command_config(uid, gid, workdir, argv, env):
    """The agent's config: NUL-terminated uid, gid, workdir, argc, argv..., env..."""
    fields = [str(uid), str(gid), workdir, str(len(argv)), *argv, *env]
    return b"".join(f.encode() + b"\0" for f in fields)


def write_initrd(out, base_path, *, config, files):
    """The instance's initrd: the base archive, then /ctr/{config,net,...}."""
    with open(out, "wb") as f:
        with open(base_path, "rb") as src:
            shutil.copyfileobj(src, f)
        c = Cpio(f)
        c.file("ctr/config", config, 0o600)
        for name, data in files.items():
            c.file(f"ctr/{name}", data.encode() if isinstance(data, str) else data)
        c.close()
