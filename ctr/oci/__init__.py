"""ctr-oci: the OCI runtime command (runc's grammar) that podman, containerd and
CRI-O drive, on ctr's container driver.

    config.py     a bundle's config.json -> InstanceSpec (typed, checked once)
    state.py      the state root (/run/ctr-oci/ID): records, status, pid files
    runtime.py    the verbs: create, start, kill, delete, exec, pause, resume, ps
    documents.py  `spec` (a default config.json) and `features`
    cli.py        argument parsing and printing: the only module that prints

create/start split: `create` starts the container's process through the
container driver with a gate (ctr.namespaces: runc's exec fifo in the state
folder) and returns once the process waits there, leaving it to the caller
(conmon and containerd's shim are subreapers); `start` opens the fifo.
"""
