"""--userns=auto: each container gets its own block of host ids.

The blocks come from the subordinate ranges of the user `ctr` in /etc/subuid
and /etc/subgid (`make install` adds `ctr:1000000000:1000000000` to both when
there is none; CTR_SUBUID / CTR_SUBGID name other files). Each instance takes
the first block of SIZE ids that no other instance of the state root holds; the
spec records it, so the block is free again when the instance is removed. Two
instances never share ids, and the container's root is a host uid nobody else
has.

The root filesystem: a one-time copy of the image, with every owner shifted
into the block, becomes the overlay's lower layer (and the empty upper and work
dirs are chowned likewise); the container's own root mounts the overlay
(unprivileged overlayfs, Linux 5.11+, with user.* xattrs). A layered image gets
a shifted copy per layer (instances/NAME/layers/0 is the top one), each made once,
at create, with its opaque directories marked for userxattr (user.overlay.opaque;
whiteouts are 0/0 character devices either way). Idmapped lower layers (Linux
5.19+) would avoid the copies; not used yet. A copy of busybox costs a few
milliseconds, once per instance.
"""

import fcntl
import os

from ctr.errors import CtrError

SIZE = 65536
USER = "ctr"


def _ranges(kind):
    path = os.environ.get(f"CTR_SUB{kind.upper()}") or f"/etc/sub{kind}"
    out = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.strip().split(":")
                if len(fields) == 3 and fields[0] == USER and fields[1].isdigit() \
                        and fields[2].isdigit():
                    out.append((int(fields[1]), int(fields[2])))
    except FileNotFoundError:
        pass
    if not any(count >= SIZE for _, count in out):
        raise CtrError(f"--userns=auto needs a range of at least {SIZE} ids for the user "
                       f"{USER} in {path} (e.g. {USER}:1000000000:1000000000; "
                       "make install adds one)")
    return out


def _blocks(ranges):
    for start, count in ranges:
        yield from range(start, start + count - SIZE + 1, SIZE)


def allocate(taken):
    """(uid base, gid base) of a free block. `taken`: the specs' userns dicts
    of every other instance; the caller holds `lock(store)`."""
    used_uids = {u["uid"] for u in taken if u}
    used_gids = {u["gid"] for u in taken if u}
    uids = (b for b in _blocks(_ranges("uid")) if b not in used_uids)
    gids = (b for b in _blocks(_ranges("gid")) if b not in used_gids)
    uid, gid = next(uids, None), next(gids, None)
    if uid is None or gid is None:
        raise CtrError("--userns=auto: every block of subordinate ids is in use")
    return {"uid": uid, "gid": gid, "size": SIZE}


class lock:
    """Held across allocation and the record's creation, so two creates
    cannot take the same block."""

    def __init__(self, store):
        self.path = os.path.join(store.root, "userns.lock")

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def shifted_copy(image, dest, userns):
    """Copy the image's tree to `dest` (cp -a: hard links, devices, xattrs kept)
    with every owner moved into the block."""
    import subprocess

    du, dg = userns["uid"], userns["gid"]
    r = subprocess.run(["cp", "-a", "--reflink=auto", image, dest], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise CtrError(f"copying the image for --userns=auto: {r.stderr.strip()}")
    seen, dev = set(), os.lstat(dest).st_dev
    for top, dirs, files in os.walk(dest):
        for path in [top] + [os.path.join(top, n) for n in files + dirs
                             if n in files or os.path.islink(os.path.join(top, n))]:
            st = os.lstat(path)
            if st.st_ino in seen or st.st_dev != dev:
                continue
            seen.add(st.st_ino)
            os.lchown(path, st.st_uid + du if st.st_uid < SIZE else du,
                      st.st_gid + dg if st.st_gid < SIZE else dg)
            if not os.path.islink(path):
                os.chmod(path, st.st_mode & 0o7777)  # chown clears the set-id bits


def check_reachable(path):
    """The container's root, an unprivileged uid, walks to its layers under the
    state root: every folder above must be searchable by others."""
    import stat

    path = os.path.abspath(path)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            raise CtrError(f"--userns=auto: the container's uid cannot reach {path} "
                           f"(chmod o+x {path}, or a state root under /var/lib)")
        if path == "/":
            return
        path = os.path.dirname(path)


def write_maps(pid, userns, id_mappings=None):
    """The parent's side, after clone(CLONE_NEWUSER) and before the child goes:
    the block of `userns`, or an OCI bundle's `id_mappings` ({"uid": [...],
    "gid": [...]} of {containerID, hostID, size}) as they are."""
    for kind, base in (("uid", userns["uid"]), ("gid", userns["gid"])):
        if id_mappings:
            text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                           for m in id_mappings[kind])
        else:
            text = f"0 {base} {userns['size']}\n"
        try:
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write(text)
        except OSError as err:
            raise CtrError(f"cannot write the {kind} map ({text.strip()!r}): "
                           f"{err.strerror}") from err


OPAQUE = "trusted.overlay.opaque"
USER_OPAQUE = "user.overlay.opaque"


def _mark_opaque(tree):
    """Opaque directories as an overlay mounted with userxattr reads them."""
    for top, _, _ in os.walk(tree):
        try:
            value = os.getxattr(top, OPAQUE, follow_symlinks=False)
        except OSError:
            continue
        os.setxattr(top, USER_OPAQUE, value, follow_symlinks=False)


def layers_dir(rec):
    return os.path.join(rec.dir, "layers")


def lowerdir(rec):
    """The lowerdir of a --userns=auto instance: its shifted copies, top first;
    None when they are gone."""
    many = layers_dir(rec)
    if os.path.isdir(many):
        return ":".join(os.path.join(many, n) for n in
                        sorted(os.listdir(many), key=int))
    return rec.lower if os.path.isdir(rec.lower) else None


def create_record(store, image_lowerdirs, spec):
    """The record of a --userns=auto instance: a block of ids of its own (allocated
    under the lock, so two creates never share one) and a copy of the image's root
    (of each of its layers, top first) owned by them. Returns the record; on
    failure nothing is left."""
    import dataclasses

    from ctr.revert import Reverter

    check_reachable(store.instances_dir)
    with lock(store):
        taken = []
        for rec in store.records():
            try:
                taken.append(rec.spec.userns)
            except CtrError:
                continue  # a record being removed, or damaged: not holding ids
        spec = dataclasses.replace(spec, userns=allocate(taken))
        rec = store.create_record(spec)
    with Reverter() as revert:
        revert.add(rec.remove)
        ids = spec.userns
        if isinstance(image_lowerdirs, str):
            image_lowerdirs = [image_lowerdirs]
        if len(image_lowerdirs) == 1:
            shifted_copy(image_lowerdirs[0], rec.lower, ids)
            _mark_opaque(rec.lower)
        else:
            os.mkdir(layers_dir(rec), 0o755)
            for i, layer in enumerate(image_lowerdirs):
                dest = os.path.join(layers_dir(rec), str(i))
                shifted_copy(layer, dest, ids)
                _mark_opaque(dest)
        for path in (rec.upper, rec.work, rec.rootfs):
            os.chown(path, ids["uid"], ids["gid"])
        os.chmod(rec.dir, 0o711)  # the container's root walks to its layers
        revert.success()
    return rec
