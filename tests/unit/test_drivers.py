"""The driver contract (ctr.drivers): both drivers and their process handles
satisfy the protocols, with the protocols' signatures; the registry; a driver
never imports another driver's module, nor the VM driver the container's
namespaces (psutil's test_contracts)."""

import ast
import inspect
import os
import socket
import subprocess
import sys

import pytest

from ctr import drivers
from ctr.drivers.container import ContainerDriver, ContainerProcess
from ctr.drivers.vm import VmDriver, VmProcess
from ctr.errors import StateError
from ctr.vm.agent import AgentSession

DRIVER_METHODS = ("start", "exec", "pause", "resume", "describe", "signal")
HANDLE_METHODS = ("send_signal", "wait")


def public_methods(protocol):
    return {name for name, value in vars(protocol).items()
            if callable(value) and not name.startswith("_")}


def same_signature(impl, proto):
    """Parameter names, kinds and defaults as the protocol's (annotations aside)."""
    def shape(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    return shape(impl) == shape(proto)


def test_the_protocols_list_what_the_drivers_implement():
    assert public_methods(drivers.Driver) == set(DRIVER_METHODS)
    assert public_methods(drivers.ProcessHandle) == set(HANDLE_METHODS)


@pytest.mark.parametrize("cls,kind", [(ContainerDriver, "container"), (VmDriver, "vm")])
def test_drivers_satisfy_the_protocol(cls, kind):
    driver = cls()
    assert isinstance(driver, drivers.Driver)
    assert driver.kind == kind
    for name in DRIVER_METHODS:
        assert same_signature(getattr(cls, name), getattr(drivers.Driver, name)), name


@pytest.fixture
def handles():
    """One of each process handle: the container's init and an exec, QEMU,
    an agent session (over a socketpair)."""
    host, guest = socket.socketpair()
    pid = os.getpid()
    yield {"init": ContainerProcess(pid, None, object(), {"network": "none"}),
           "exec": ContainerProcess(pid),
           "qemu": VmProcess(None, pid, object(), {"network": "none"}),
           "agent": AgentSession(host, b"cfg", "vm1")}
    host.close()
    guest.close()


def test_process_handles_satisfy_the_protocol(handles):
    for name, handle in handles.items():
        assert isinstance(handle, drivers.ProcessHandle), name
        for method in HANDLE_METHODS:
            assert same_signature(getattr(type(handle), method),
                                  getattr(drivers.ProcessHandle, method)), (name, method)
    for name in ("init", "qemu"):
        assert isinstance(handles[name], drivers.InstanceProcess), name
    assert not isinstance(handles["agent"], drivers.InstanceProcess)


def test_load_imports_the_driver_asked_for():
    assert type(drivers.load("container")) is ContainerDriver
    assert type(drivers.load("vm")) is VmDriver
    with pytest.raises(StateError, match="unknown instance kind 'jail'"):
        drivers.load("jail")


def imported_modules(module):
    """Every module `module`'s source imports, at the top or in a function."""
    with open(sys.modules[module].__file__) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("module,never", [
    ("ctr.drivers.container", ("ctr.drivers.vm", "ctr.vm")),
    ("ctr.drivers.vm", ("ctr.drivers.container", "ctr.namespaces")),
])
def test_a_driver_never_imports_another(module, never):
    imported = imported_modules(module)
    for name in never:
        assert not any(i == name or i.startswith(name + ".") for i in imported), name
    # and loading it does not pull the other in (-P: the installed ctr, not the checkout)
    code = (f"import sys, {module}; "
            f"print(sorted(m for m in sys.modules if m.startswith({never!r})))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
