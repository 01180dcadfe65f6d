"""cgroup v2's device controller: an eBPF program of type CGROUP_DEVICE
attached to the instance's cgroup, which the kernel asks on every open and
mknod of a device node (what runc's devicefilter and crun's ebpf do; v2 has no
devices.allow file).

The program is made from the same rules the v1 backend writes to
devices.allow/deny (ctr.cgroups.common.device_rules: (allow, "c 1:3 rwm")
pairs, in order, from "deny all"). For each kind of access asked (mknod, read,
write), the last rule that matches the device and names that access decides;
no rule: denied. The access is allowed when each kind asked is.

It is attached with BPF_F_ALLOW_MULTI, so programs of the cgroups above (a
systemd unit's) still apply, and goes away with the cgroup. Nothing here
needs more than the bpf(2) system call, through ctypes.
"""

import ctypes
import os
import platform
import struct

from ctr.errors import CgroupError

# linux/bpf.h
BPF_PROG_LOAD, BPF_PROG_ATTACH = 5, 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
DEV_BLOCK, DEV_CHAR = 1, 2  # bpf_cgroup_dev_ctx.access_type, low 16 bits
ACCESS = {"m": 1, "r": 2, "w": 4}  # its high 16 bits
SYSCALL = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351, "riscv64": 280}

# the instructions used (class | op | source)
LDX_W = 0x61  # r_dst = *(u32 *)(r_src + off)
MOV_K, MOV_X, AND_K, RSH_K = 0xB7, 0xBF, 0x57, 0x77  # 64-bit ALU
JNE32_K, JEQ_K, JA, EXIT = 0x56, 0x15, 0x05, 0x95
R0, R1, R2, R3, R4, R5, R6 = range(7)


def _parse(rule):
    """"c 1:3 rwm" / "a *:* rwm" -> (type, major or None, minor or None, access)."""
    kind, _, rest = rule.partition(" ")
    numbers, _, access = rest.partition(" ")
    major, _, minor = numbers.partition(":") if numbers else ("*", "", "*")
    return (kind, None if major in ("*", "") else int(major),
            None if minor in ("*", "") else int(minor), access or "rwm")


def program(rules):
    """The program's instructions (bytes) for `rules`, (allow, text) pairs."""
    code = []  # [opcode, dst, src, off or label, imm]

    def emit(op, dst=0, src=0, off=0, imm=0):
        code.append([op, dst, src, off, imm])

    labels = {}
    # r2: the device's type, r3: the access asked, r4: major, r5: minor
    emit(LDX_W, R6, R1, 0)
    emit(MOV_X, R2, R6)
    emit(AND_K, R2, imm=0xFFFF)
    emit(MOV_X, R3, R6)
    emit(RSH_K, R3, imm=16)
    emit(LDX_W, R4, R1, 4)
    emit(LDX_W, R5, R1, 8)
    parsed = [(allow, *_parse(text)) for allow, text in rules]
    for name, bit in ACCESS.items():
        done = f"done-{name}"
        emit(MOV_X, R0, R3)
        emit(AND_K, R0, imm=bit)
        emit(JEQ_K, R0, off=done, imm=0)  # this access is not asked
        decided = False  # a rule that matches every device: those before it never count
        for n, (allow, kind, major, minor, access) in enumerate(reversed(parsed)):
            if name not in access:
                continue
            nxt = f"next-{name}-{n}"
            start = len(code)
            if kind != "a":
                emit(JNE32_K, R2, off=nxt, imm=DEV_CHAR if kind == "c" else DEV_BLOCK)
            if major is not None:
                emit(JNE32_K, R4, off=nxt, imm=major)
            if minor is not None:
                emit(JNE32_K, R5, off=nxt, imm=minor)
            decided = len(code) == start
            if allow:
                emit(JA, off=done)
            else:
                emit(MOV_K, R0, imm=0)
                emit(EXIT)
            labels[nxt] = len(code)
            if decided:
                break
        if not decided:
            emit(MOV_K, R0, imm=0)  # no rule names it: denied
            emit(EXIT)
        labels[done] = len(code)
    emit(MOV_K, R0, imm=1)
    emit(EXIT)
    out = bytearray()
    for pc, (op, dst, src, off, imm) in enumerate(code):
        if isinstance(off, str):
            off = labels[off] - pc - 1
        imm &= 0xFFFFFFFF
        out += struct.pack("<BBhI", op, (src << 4) | dst, off, imm)
    return bytes(out)


def _bpf(cmd, attr):
    number = SYSCALL.get(platform.machine())
    if number is None:
        raise CgroupError(f"no device filter on {platform.machine()}: its bpf(2) number is "
                          "not known to ctr")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    ret = libc.syscall(ctypes.c_long(number), ctypes.c_int(cmd), buf,
                       ctypes.c_uint(len(attr)))
    if ret < 0:
        return -ctypes.get_errno(), buf
    return ret, buf


def attach(cgroup_dir, rules):
    """Load the program for `rules` and attach it to the cgroup2 folder."""
    insns = program(rules)
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(1 << 16)
    attr = bytearray(128)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8,
                     ctypes.addressof(code), ctypes.addressof(license_), 1, len(log),
                     ctypes.addressof(log))
    attr[48:48 + 9] = b"ctr_devcg"
    fd, _ = _bpf(BPF_PROG_LOAD, attr)
    if fd < 0:
        detail = log.value.decode(errors="replace").strip().splitlines()
        raise CgroupError(f"cannot load the device filter: {os.strerror(-fd)}"
                          + (f" ({detail[0]})" if detail else ""), op="restrict devices",
                          path=cgroup_dir, errno=-fd)
    try:
        try:
            cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise CgroupError(f"cannot attach the device filter: opening {cgroup_dir}: "
                              f"{err.strerror}", op="restrict devices", path=cgroup_dir,
                              errno=err.errno) from err
        try:
            attr = bytearray(struct.pack("<IIII", cg, fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI))
            attr += bytes(128 - len(attr))
            ret, _ = _bpf(BPF_PROG_ATTACH, attr)
            if ret < 0:
                raise CgroupError(f"cannot attach the device filter to {cgroup_dir}: "
                                  f"{os.strerror(-ret)}", op="restrict devices",
                                  path=cgroup_dir, errno=-ret)
        finally:
            os.close(cg)
    finally:
        os.close(fd)
