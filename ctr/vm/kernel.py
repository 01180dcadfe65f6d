"""The guest kernel: fetched once from the distribution, cached under the state root.

    ROOT/kernels/VERSION/vmlinux        uncompressed (TCG boots it in ~1.3 s;
                                        decompressing an xz bzImage costs ~2.5 s)
    ROOT/kernels/VERSION/modules/*.ko   what the initramfs loads, and
    ROOT/kernels/VERSION/modules.order  in which order (modules.net: then
                                        these, for a VM with a network)
    ROOT/kernels/default                -> VERSION

The stock Debian/Ubuntu kernel (`linux-image-amd64` / `linux-image-generic`) is
used, not the cloud flavour: only the stock one has virtio-9p, the file system
ctr shares the instance's root with (see ctr/vm/launch.py).
"""

import glob
import lzma
import os
import shutil
import subprocess
import tempfile

from ctr.errors import CtrError

# What the guest needs as modules (dependencies are read from each module);
# the network's only when the VM has one (each module costs ~20 ms under TCG).
MODULES = ("virtio_mmio", "virtio_console", "9pnet_virtio", "9p")
NET_MODULES = ("virtio_net",)
META_PACKAGES = ("linux-image-amd64", "linux-image-generic")
XZ_MAGIC = b"\xfd7zXZ\x00"


class Kernel:
    def __init__(self, path, modules_dir=None, version=None):
        self.path = path
        self.modules_dir = modules_dir
        self.version = version

    def _list(self, name):
        if not self.modules_dir:
            return []
        try:
            with open(os.path.join(self.modules_dir, "..", name)) as f:
                return [os.path.join(self.modules_dir, m) for m in f.read().split()]
        except FileNotFoundError:
            return []

    @property
    def modules(self):
        """The module files the guest always loads, in load order."""
        return self._list("modules.order")

    @property
    def net_modules(self):
        """The ones a VM with a network loads after those."""
        return self._list("modules.net")


def cache_dir(store):
    return os.path.join(store.root, "kernels")


def cached(store):
    """The fetched kernel, or None."""
    link = os.path.join(cache_dir(store), "default")
    target = os.path.realpath(link)
    vmlinux = os.path.join(target, "vmlinux")
    if not os.path.isfile(vmlinux):
        return None
    return Kernel(vmlinux, os.path.join(target, "modules"), os.path.basename(target))


def find(store, path=None):
    """The kernel to boot: the one the user named, else the cached one."""
    if path:
        if not os.path.isfile(path):
            raise CtrError(f"--kernel {path}: no such file")
        return Kernel(os.path.abspath(path))
    kernel = cached(store)
    if kernel is None:
        raise CtrError("no guest kernel: run `ctr kernel fetch` (or give --kernel PATH)")
    return kernel


# -- fetching ------------------------------------------------------------------------

def _run(argv, what, **kw):
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout
    except FileNotFoundError:
        raise CtrError(f"{what}: {argv[0]} is not installed") from None
    except subprocess.CalledProcessError as err:
        last = (err.stderr or err.stdout or "").strip().splitlines()
        raise CtrError(f"{what}: {last[-1] if last else f'exit status {err.returncode}'}") \
            from None


def _package():
    """The versioned kernel package the distribution's meta package points to."""
    for meta in META_PACKAGES:
        try:
            out = subprocess.run(["apt-cache", "depends", meta], capture_output=True,
                                 text=True).stdout
        except FileNotFoundError:
            raise CtrError("fetching a kernel needs apt (Debian/Ubuntu); "
                           "give --kernel PATH instead") from None
        for line in out.splitlines():
            dep = line.strip().removeprefix("Depends:").strip()
            if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
                return dep
    raise CtrError(f"no kernel package found ({' or '.join(META_PACKAGES)}); "
                   "run apt-get update, or give --kernel PATH")


def extract_vmlinux(bzimage, out):
    """The uncompressed kernel inside an xz bzImage (what extract-vmlinux does)."""
    with open(bzimage, "rb") as f:
        data = f.read()
    at = data.find(XZ_MAGIC)
    if at < 0:
        raise CtrError(f"{bzimage}: not an xz-compressed kernel")
    try:
        raw = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[at:])
    except lzma.LZMAError as err:
        raise CtrError(f"{bzimage}: {err}") from None
    if not raw.startswith(b"\x7fELF"):
        raise CtrError(f"{bzimage}: the decompressed kernel is not an ELF file")
    with open(out, "wb") as f:
        f.write(raw)


def modinfo_depends(path):
    """A module's dependencies, from its .modinfo strings."""
    with open(path, "rb") as f:
        data = f.read()
    at = data.find(b"\0depends=")
    if at < 0:
        return []
    value = data[at + 9:data.index(b"\0", at + 1)].decode()
    return [d for d in value.split(",") if d]


def load_order(found, wanted=MODULES):
    """Modules (name -> path) in an order where dependencies come first."""
    order = []

    def visit(name, chain=()):
        if name in order:
            return
        if name not in found:
            raise CtrError(f"the kernel package has no module {name}"
                           + (f" (needed by {chain[-1]})" if chain else ""))
        for dep in modinfo_depends(found[name]):
            visit(dep, chain + (name,))
        order.append(name)

    for name in wanted:
        visit(name)
    return order


def fetch(store, progress=None):
    """Download the distribution's kernel package once; keep vmlinux and the
    modules the guest needs. Returns the Kernel."""
    say = progress or (lambda msg: None)
    package = _package()
    os.makedirs(cache_dir(store), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir(store), prefix=".fetch-") as tmp:
        os.chmod(tmp, 0o755)
        say(f"downloading {package}")
        _run(["apt-get", "download", "-o", "APT::Sandbox::User=root", package],
             f"apt-get download {package}", cwd=tmp)
        deb = glob.glob(os.path.join(tmp, "*.deb"))[0]
        say(f"unpacking {os.path.basename(deb)}")
        tree = os.path.join(tmp, "tree")
        _run(["dpkg-deb", "-x", deb, tree], "dpkg-deb")
        bzimages = glob.glob(os.path.join(tree, "boot", "vmlinuz-*"))
        if not bzimages:
            raise CtrError(f"{package} has no /boot/vmlinuz")
        version = os.path.basename(bzimages[0]).removeprefix("vmlinuz-")
        stage = os.path.join(tmp, version)
        os.makedirs(os.path.join(stage, "modules"))
        say("extracting vmlinux")
        extract_vmlinux(bzimages[0], os.path.join(stage, "vmlinux"))
        found = {}
        for path in glob.glob(os.path.join(tree, "lib/modules/*/kernel/**/*.ko"),
                              recursive=True):
            found[os.path.basename(path)[:-3].replace("-", "_")] = path
        order = load_order(found)
        net = [m for m in load_order(found, MODULES + NET_MODULES) if m not in order]
        for name in order + net:
            shutil.copy(found[name], os.path.join(stage, "modules", f"{name}.ko"))
        for listing, names in (("modules.order", order), ("modules.net", net)):
            with open(os.path.join(stage, listing), "w") as f:
                f.write("".join(f"{n}.ko\n" for n in names))
        final = os.path.join(cache_dir(store), version)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(stage, final)
    link = os.path.join(cache_dir(store), "default")
    tmp_link = link + ".new"
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(version, tmp_link)
    os.replace(tmp_link, link)
    say(f"kernel {version} ready")
    return cached(store)


def host_tsc_khz():
    """The host's TSC frequency in kHz: a TCG guest reads the host's TSC, and a
    microvm guest without it hangs in timer calibration."""
    try:
        with open("/sys/devices/system/cpu/cpu0/tsc_freq_khz") as f:
            return int(f.read())
    except (OSError, ValueError):
        pass
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    raise CtrError("cannot tell the host's TSC frequency from /proc/cpuinfo")
