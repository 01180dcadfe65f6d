"""The VM pieces that need no QEMU: the cpio writer, module order, the status
channel, the kernel command line, acceleration choice."""

import io
import subprocess

import pytest

from ctr.errors import CtrError
from ctr.vm import initramfs, kernel, launch


def test_cpio_archives_list_with_the_cpio_tool(tmp_path):
    buf = io.BytesIO()
    c = initramfs.Cpio(buf)
    c.dir("ctr")
    c.file("ctr/config", initramfs.command_config(0, 0, "/", ["echo", "hi"], ["A=1"]))
    c.chardev("console", 5, 1)
    c.close()
    out = subprocess.run(["cpio", "-it", "--quiet"], input=buf.getvalue(), capture_output=True,
                         check=True).stdout.decode().split()
    assert out == ["ctr", "ctr/config", "console"]
    assert len(buf.getvalue()) % 4 == 0


def test_command_config_is_nul_separated():
    assert initramfs.command_config(1, 2, "/w", ["sh", "-c", "x y"], ["K=V"]) == \
        b"1\0" b"2\0" b"/w\0" b"3\0" b"sh\0" b"-c\0" b"x y\0" b"K=V\0"


def fake_module(path, depends):
    path.write_bytes(b"\x7fELF...\0license=GPL\0depends=" + depends.encode() + b"\0name=x\0")
    return str(path)


def test_modules_load_after_their_dependencies(tmp_path):
    found = {name: fake_module(tmp_path / f"{name}.ko", deps) for name, deps in {
        "9p": "9pnet,netfs", "9pnet": "", "netfs": "", "virtio_mmio": "virtio,virtio_ring",
        "virtio": "virtio_ring", "virtio_ring": ""}.items()}
    order = kernel.load_order(found, wanted=("virtio_mmio", "9p"))
    assert order == ["virtio_ring", "virtio", "virtio_mmio", "9pnet", "netfs", "9p"]
    with pytest.raises(CtrError, match="no module fscache .needed by 9p"):
        kernel.load_order({**found, "9p": fake_module(tmp_path / "9p.ko", "fscache")},
                          wanted=("9p",))


def test_status_channel(tmp_path):
    status = tmp_path / "status"
    assert launch.read_status(str(status)) == {}
    status.write_text("ready 42\n")
    assert launch.read_status(str(status)) == {"ready": "42"}
    status.write_text("ready 42\nexit 127 sh: executable file not found in $PATH\n")
    assert launch.read_status(str(status)) == {
        "ready": "42", "exit": 127, "message": "sh: executable file not found in $PATH"}


def test_kernel_command_line_carries_the_host_tsc():
    line = launch.cmdline(2596122)
    assert "tsc_early_khz=2596122" in line and f"lpj={2596122 * 4}" in line
    assert len(line) < 2048


def test_accel_choice():
    with pytest.raises(CtrError, match="invalid --accel"):
        launch.choose_accel("xen")
    assert launch.choose_accel("tcg") == ("tcg", None)
    accel, notice = launch.choose_accel()
    assert (accel == "kvm") == (launch.hardware_virtualization() and launch.kvm_usable())
    assert (notice is None) == (accel == "kvm")


def test_vcpus_round_up():
    assert [launch.vcpus(c) for c in (None, 0.5, 1, 1.5, 2)] == [1, 1, 1, 2, 2]
