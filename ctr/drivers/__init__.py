"""Instance drivers: one per kind, chosen here."""

from ctr.errors import StateError

DRIVERS = {"container": ("ctr.drivers.container", "ContainerDriver"),
           "vm": ("ctr.drivers.vm", "VmDriver")}


def driver_for(kind):
    """The driver of an instance kind; its module is imported only when used."""
    try:
        module, cls = DRIVERS[kind]
    except KeyError:
        raise StateError(f"unknown instance kind {kind!r}") from None
    import importlib

    return getattr(importlib.import_module(module), cls)()
