"""The QEMU launcher: acceleration, the command line, the process.

One QEMU process is the whole VM (no virtiofsd beside it): the instance's root
is shared with QEMU's built-in virtio-9p, from an overlay mounted in a mount
namespace of QEMU's own, so the mount goes when QEMU goes. (virtiofs boots
~0.2 s faster but needs a second daemon per VM, memfd-shared guest RAM and
non-legacy virtio-mmio; 9p keeps one process to start, watch and kill.)

    -M microvm          virtio-mmio devices, no PCI, no firmware; the kernel
                        is loaded uncompressed (PVH)
    ttyS0               the kernel's console -> vm/console.log
    hvc0 (virtconsole)  the command's stdio -> QEMU's stdout: the terminal or
                        the instance's log
    ports ctr.status    file vm/status: "ready PID", "exit CODE [message]"
          ctr.ctl       socket vm/ctl.sock: signals for the command
          ctr.agent     socket vm/agent.sock: exec sessions (agent.c)
    qmp                 socket vm/qmp.sock (ctr/vm/qmp.py)
    disks (--disk)      virtio-blk, raw: /dev/vda, /dev/vdb... in order
    net                 a tap opened by ctr, passed as an fd: it vanishes with
                        QEMU, nothing to clean
"""

import math
import os
import shutil

from ctr.errors import CtrError

QEMU = "qemu-system-x86_64"
ACCELS = ("kvm", "tcg")
KERNEL_HZ = 250  # Debian's and Ubuntu's CONFIG_HZ: lpj is per jiffy


def hardware_virtualization():
    """vmx/svm in the CPU flags. /dev/kvm alone proves nothing: a paravirtual
    KVM opens fine and then never boots a stock kernel."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return "vmx" in flags or "svm" in flags
    except OSError:
        pass
    return False


def kvm_usable():
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
        return True
    except OSError:
        return False


def choose_accel(want=None):
    """(accel, notice or None)."""
    if want is not None and want not in ACCELS:
        raise CtrError(f"invalid --accel {want!r}: expected kvm or tcg")
    if want == "tcg":
        return "tcg", None
    hw, kvm = hardware_virtualization(), kvm_usable()
    if hw and kvm:
        return "kvm", None
    if want == "kvm":
        why = ("the CPU shows no vmx/svm (no hardware virtualization)" if not hw
               else "/dev/kvm cannot be opened")
        raise CtrError(f"--accel kvm: {why}")
    return "tcg", ("no hardware virtualization here (no vmx/svm, or no /dev/kvm): "
                   "the VM runs under TCG emulation")


def qemu_binary():
    path = shutil.which(QEMU)
    if path is None:
        raise CtrError(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
    return path


def cmdline(tsc_khz, extra=""):
    return " ".join(filter(None, (
        "console=ttyS0 panic=-1 quiet loglevel=3 rdinit=/init",
        "cryptomgr.notests init_on_alloc=0 8250.nr_uarts=1",
        f"tsc_early_khz={tsc_khz} lpj={tsc_khz * 1000 // KERNEL_HZ}", extra)))


def argv(*, kernel, initrd, rootfs, accel, memory, cpus, tsc_khz, kernel_args=(), disks=()):
    """QEMU's arguments; paths of the run directory are relative (QEMU runs in
    it), so socket paths stay short whatever the state root."""
    args = [
        qemu_binary(), "-M", "microvm,pit=off,pic=off,isa-serial=on",
        "-accel", accel, "-m", f"{memory // (1 << 20)}M", "-smp", str(cpus),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", kernel, "-initrd", initrd, "-append", cmdline(tsc_khz, " ".join(kernel_args)),
        "-chardev", "file,id=console,path=console.log", "-serial", "chardev:console",
        "-device", "virtio-serial-device,max_ports=4",
        "-chardev", "stdio,id=hvc,signal=off", "-device", "virtconsole,chardev=hvc",
        "-chardev", "file,id=status,path=status",
        "-device", "virtserialport,chardev=status,name=ctr.status",
        "-chardev", "socket,id=ctl,path=ctl.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=ctl,name=ctr.ctl",
        "-chardev", "socket,id=agent,path=agent.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=agent,name=ctr.agent",
        "-fsdev", f"local,id=root,path={rootfs},security_model=passthrough",
        "-device", "virtio-9p-device,fsdev=root,mount_tag=root",
        "-qmp", "unix:qmp.sock,server=on,wait=off",
    ]
    for i, path in enumerate(disks):
        args += ["-drive", f"file={path},format=raw,if=none,id=disk{i}",
                 "-device", f"virtio-blk-device,drive=disk{i}"]
    return args


def net_args(tap_fd, mac):
    """A virtio-net device on the tap QEMU inherits as `tap_fd`."""
    return ["-netdev", f"tap,id=net0,fd={tap_fd}",
            "-device", f"virtio-net-device,netdev=net0,mac={mac}"]


def vcpus(cpus):
    """--cpus 1.5 gives the guest 2 vCPUs (and the cgroup the 1.5 CPU quota)."""
    return max(1, math.ceil(cpus)) if cpus else 1


def read_status(path):
    """What the guest reported: {"ready": pid} and/or {"exit": code, "message": m}."""
    out = {}
    try:
        with open(path, "rb") as f:
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        if word == "ready":
            out["ready"] = rest
        elif word == "exit":
            code, _, message = rest.partition(" ")
            try:
                out["exit"] = int(code)
            except ValueError:
                continue
            out["message"] = message
    return out


def last_lines(path, n=3):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in lines[-n:] if line.strip())
