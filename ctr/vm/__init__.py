"""VMs: the guest kernel, its initramfs and agent, the QEMU launcher, QMP."""
