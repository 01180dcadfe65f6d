"""ctr: an OS-level virtualization runtime (containers and VMs from one image)."""

__version__ = "0.1.0"
