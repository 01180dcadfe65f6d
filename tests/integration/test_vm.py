"""VMs: the same image and verbs as containers, booted under QEMU (TCG on these
machines). Each boot costs 1.5-3 s, so tests ask several things of one VM."""

import os
import platform
import time

import pytest
from helpers import assert_refused, wait_for


@pytest.fixture
def vm(ctr, vm_kernels):
    """A state root with the session's busybox image and guest kernel."""
    os.symlink(vm_kernels, ctr.path("kernels"))
    return ctr


def run_vm(ctr, *args, **kw):
    return ctr("run", "--vm", "--network", "none", *args, **kw)


def test_own_kernel_exit_status_and_output(vm):
    r = run_vm(vm, "--rm", "busybox", "sh", "-c",
               "uname -r; echo to-stderr >&2; exit 3")
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] != platform.release()  # not the host's kernel
    assert "to-stderr" in r.stdout  # stdout and stderr share the guest's console
    assert "TCG" in r.stderr or "notice" not in r.stderr
    assert not os.listdir(vm.path("instances"))


def guest_memory_kb(meminfo):
    """All the RAM the guest's kernel maps (MemTotal leaves out the kernel's own)."""
    fields = dict(line.split(":") for line in meminfo.splitlines() if ":" in line)
    mapped = sum(int(v.split()[0]) for k, v in fields.items() if k.startswith("DirectMap"))
    return mapped, int(fields["MemTotal"].split()[0])


def test_memory_size_shows_in_the_guest(vm):
    r = run_vm(vm, "--rm", "-m", "160m", "busybox", "cat", "/proc/meminfo")
    assert r.returncode == 0, r.stderr
    mapped, total = guest_memory_kb(r.stdout)
    assert mapped == 160 * 1024 and 96 * 1024 < total < mapped


def test_writes_land_in_the_upper_dir_and_survive_restart(vm):
    vm("create", "--vm", "--network", "none", "--name", "w", "busybox", "sh", "-c",
       "echo run >> /data; cat /data", check=True)
    assert vm("start", "-a", "w").stdout.splitlines()[-1:] == ["run"]
    r = vm("start", "-a", "w")
    assert r.returncode == 0 and r.stdout.splitlines()[-2:] == ["run", "run"]
    info = vm.inspect("w")
    assert info["kind"] == "vm"
    with open(os.path.join(info["paths"]["upper"], "data")) as f:
        assert f.read() == "run\nrun\n"
    assert not os.path.exists(os.path.join(info["paths"]["image"], "data"))
    assert vm("ls", "-a").stdout.splitlines()[1].split()[:3] == ["w", "vm", "busybox"]


def test_exec_logs_and_stop_of_a_running_vm(vm):
    r = run_vm(vm, "-d", "--name", "v", "busybox", "sh", "-c", "echo booted; sleep 1000")
    assert r.returncode == 0, r.stderr
    state = vm.state("v")
    assert state["status"] == "running"
    r = vm("exec", "-e", "X=1", "-w", "/etc", "v", "sh", "-c",
           "echo $X $(pwd); echo oops >&2; exit 4")
    assert (r.returncode, r.stdout, r.stderr) == (4, "1 /etc\n", "oops\n")
    assert vm("exec", "v", "cat", input="piped\n").stdout == "piped\n"
    assert vm("exec", "-u", "nobody", "v", "id", "-u").stdout.strip() == "65534"
    r = vm("exec", "v", "nosuch")
    assert r.returncode == 127 and "not found" in r.stderr
    assert wait_for(lambda: b"booted" in open(vm.path("instances", "v", "log"), "rb").read())
    assert "booted" in vm("logs", "v").stdout
    # pause halts the vCPUs through QMP; the agent answers again after unpause
    vm("pause", "v", check=True)
    assert vm.state("v")["vm"]["qmp_status"] == "paused"
    assert vm("exec", "v", "true").returncode == 125
    vm("unpause", "v", check=True)
    assert vm.state("v")["vm"]["qmp_status"] == "running"
    assert vm("exec", "v", "echo", "back").stdout == "back\n"
    t0 = time.monotonic()
    vm("stop", "-t", "5", "v", check=True)
    assert time.monotonic() - t0 < 5 + 3
    state = vm.state("v")
    assert state["status"] == "stopped" and state["exit_code"] == 143  # SIGTERM reached sh
    assert not os.path.exists(f"/proc/{state['pid'] or 0}/exe") or state["pid"] is None


def test_kill_and_rm_force_leave_no_qemu(vm):
    run_vm(vm, "-d", "--name", "k", "busybox", "sleep", "1000", check=True)
    pid = vm.state("k")["pid"]
    vm("kill", "k", check=True)
    assert wait_for(lambda: vm.state("k")["status"] == "stopped")
    assert vm.state("k")["exit_code"] == 137
    assert not os.path.exists(f"/proc/{pid}")
    run_vm(vm, "-d", "--name", "f", "busybox", "sleep", "1000", check=True)
    vm("rm", "-f", "f", check=True)
    assert not os.path.exists(vm.path("instances", "f"))


def test_command_not_found_and_not_executable(vm):
    r = run_vm(vm, "--rm", "busybox", "nosuch")
    assert r.returncode == 127
    assert "executable file not found" in r.stderr
    r = run_vm(vm, "--rm", "busybox", "/etc/passwd")
    assert r.returncode == 126


@pytest.mark.parametrize("args, message", [
    (("--kernel", "/nonexistent"), "--kernel /nonexistent: no such file"),
    (("--accel", "xen"), "invalid --accel 'xen'"),
    (("-m", "10m"), "at least 64m"),
    (("-m", "lots"), "invalid memory limit"),
    (("-m", "100t"), "more than the host has"),
    (("-t",), "-t is not supported for VMs"),
    (("--network", "host"), "not possible for a VM"),
])
def test_bad_vm_options(vm, args, message):
    assert_refused(vm, vm("run", "--vm", *args, "busybox", "true"), message)


def test_kvm_without_hardware_virtualization_is_refused(vm):
    with open("/proc/cpuinfo") as f:
        if any(flag in f.read().split() for flag in ("vmx", "svm")):
            pytest.skip("this host has hardware virtualization")
    r = run_vm(vm, "--rm", "--accel", "kvm", "busybox", "true")
    assert r.returncode == 125 and "--accel kvm: the CPU shows no vmx/svm" in r.stderr


def test_a_kernel_that_never_reaches_init(vm, tmp_path):
    junk = tmp_path / "initrd"
    junk.write_bytes(b"not an initramfs" * 64)
    r = run_vm(vm, "--rm", "--initrd", str(junk), "busybox", "true")
    assert r.returncode == 125
    assert "the VM did not reach ctr's init" in r.stderr, r.stderr
    # and one that is too slow for the boot timeout: killed, not waited for
    r = run_vm(vm, "--name", "slow", "busybox", "true", env={"CTR_VM_BOOT_TIMEOUT": "0.2"})
    assert r.returncode == 125 and "within 0.2 s" in r.stderr, r.stderr
    assert not os.path.exists(vm.path("instances", "slow"))


def test_no_kernel_is_a_clear_error(ctr):
    r = ctr("run", "--rm", "--vm", "--network", "none", "busybox", "true")
    assert r.returncode == 125
    assert "no guest kernel: run `ctr kernel fetch`" in r.stderr
    assert not os.listdir(ctr.path("instances"))
