"""--userns=auto: each container gets its own block of host ids.

The blocks come from the subordinate ranges of the user `ctr` in /etc/subuid
and /etc/subgid (`make install` adds `ctr:1000000000:1000000000` to both when
there is none; CTR_SUBUID / CTR_SUBGID name other files). Each instance takes
the first block of SIZE ids that no other instance of the state root holds; the
spec records it, so the block is free again when the instance is removed. Two
instances never share ids, and the container's root is a host uid nobody else
has.

The root filesystem, one of two ways, chosen once per host (kernel release)
and recorded in STATE_ROOT/userns-idmap.json:
- idmapped layers (Linux 5.19+, a filesystem that allows them): ctr, as host
  root, takes a detached read-only copy of each of the image's layers
  (open_tree) and idmaps it with the block's maps (mount_setattr with a helper
  user namespace of the same maps), so a file owned by 0 on disk is the
  block's first id. The container's init, in its own mount namespace, attaches
  them at instances/NAME/idmap/N and stacks its overlay on them: nothing is
  copied, every instance shares the layer store's files, and the mounts die
  with the container's mount namespace (rm, a crash, kill -9 alike). A
  layer's opaque directories get user.overlay.opaque beside their
  trusted.overlay.opaque the first time it is used so (its .json says it is
  done): the only change ever made to a layer, and only to its xattrs.
- else shifted copies, made once per (layer, block) and shared, the way
  containers/storage keeps a mapped copy of a layer for podman where the
  kernel cannot idmap: STATE_ROOT/layers/shifted/<algo>/<hex>/<uid>-<gid>-<size>
  is the layer <algo>:<hex> with every owner moved into the block whose first
  host uid and gid are <uid> and <gid> (see `shifted_copy` for what it keeps
  and the overflow rule). It is made under the layer's lock, in a
  `<uid>-<gid>-<size>.tmp-*` folder renamed into place when whole; a kill
  leaves only that folder, which the next copy of it and `image prune` remove.
  The instance's instances/NAME/layers/0.. (top first) are relative symlinks
  to its copies, and its overlay stacks them (never flattened). A copy goes
  when its layer goes (image rm, image prune: no image has the layer), and
  `image prune` (and every collection of unused layers) also removes the
  copies of a block no instance holds; `ctr rm` keeps them, so the next
  instance given the same block (the lowest free one) starts without copying.
  `system df` shows them in a row of their own, and prunes count what they free.
Either way the overlay is mounted by the container's root (unprivileged
overlayfs, Linux 5.11+, userxattr: whiteouts are 0/0 character devices, opaque
directories user.overlay.opaque), and its upper and work dirs are owned by the
block. CTR_USERNS_IDMAP=on|off overrides the choice (tests, benchmarks).
"""

import fcntl
import json
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


OVERFLOW = 65534  # the kernel's overflowuid: what an idmapped mount shows for an unmapped id
CAPS = "security.capability"


def _shift(ident, base):
    """An id of the layer, moved into the block: 0..SIZE-1 to base+id; any
    other id to the block's nobody (base+65534), as the container would see
    it through an idmapped mount (where an unmapped id shows as overflowuid)."""
    return base + (ident if ident < SIZE else OVERFLOW)


def _die_with_parent():
    import signal

    import prctl

    prctl.set_pdeathsig(signal.SIGKILL)


def shifted_copy(layer, dest, userns):
    """Copy the folder `layer` to `dest` (a new path) with every owner moved
    into the block. cp -a keeps hard links, symlinks, device nodes and fifos
    (whiteouts: 0/0 character devices, which stay whiteouts whoever owns
    them), xattrs (trusted.overlay.opaque, security.capability), modes and
    mtimes; then each inode is chowned once, and what chown clears is put
    back: the set-id bits and the file capabilities. Opaque directories get
    user.overlay.opaque too, for an overlay mounted with userxattr."""
    import subprocess

    du, dg = userns["uid"], userns["gid"]
    r = subprocess.run(["cp", "-a", "--reflink=auto", layer, dest], capture_output=True,
                       text=True, preexec_fn=_die_with_parent)  # a killed ctr stops it
    if r.returncode != 0:
        raise CtrError(f"copying the layer {layer} for --userns=auto: {r.stderr.strip()}")
    import stat

    seen, dev = set(), os.lstat(dest).st_dev
    for top, dirs, files in os.walk(dest):
        for path in [top] + [os.path.join(top, n) for n in files + dirs
                             if n in files or os.path.islink(os.path.join(top, n))]:
            st = os.lstat(path)
            if st.st_ino in seen or st.st_dev != dev:
                continue
            seen.add(st.st_ino)
            caps = None
            if stat.S_ISREG(st.st_mode):
                try:
                    caps = os.getxattr(path, CAPS, follow_symlinks=False)
                except OSError:
                    pass
            os.lchown(path, _shift(st.st_uid, du), _shift(st.st_gid, dg))
            if st.st_mode & 0o6000 and not stat.S_ISLNK(st.st_mode):
                os.chmod(path, st.st_mode & 0o7777)  # chown clears the set-id bits
            if caps is not None:
                os.setxattr(path, CAPS, caps, follow_symlinks=False)  # and file caps
    _mark_opaque(dest)


def shifted_key(ids):
    return f"{ids['uid']}-{ids['gid']}-{ids.get('size', SIZE)}"


def shifted_layer(layers, layer_id, folder, ids):
    """The shifted copy of the layer `layer_id` (its folder: `folder`) for the
    block `ids`: the cached one, else made now, once, under the layer's lock."""
    import shutil

    from ctr.images.layerstore import TMP

    dest = os.path.join(layers.shifted_dir(layer_id), shifted_key(ids))
    if os.path.isdir(dest):
        return dest
    layers.ensure()
    with layers.lock(layer_id):
        if os.path.isdir(dest):
            return dest
        if not os.path.isdir(folder):
            raise CtrError(f"the layer {layer_id} is gone ({folder}): pull the image again")
        parent = os.path.dirname(dest)
        top = os.path.dirname(os.path.dirname(parent))
        for d in (layers.dir, top, os.path.dirname(parent), parent):  # the container's
            # root walks them to its copies
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o711)
        for entry in os.listdir(parent):  # what a killed copy left
            if entry.startswith(os.path.basename(dest) + TMP):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        tmp = f"{dest}{TMP}{os.getpid()}"
        try:
            shifted_copy(folder, tmp, ids)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def block_key(spec):
    """The shifted copies' key of the block the instance of `spec` holds, or
    None (no block, or no spec: a damaged record)."""
    u = spec.userns if spec else None
    return shifted_key(u) if u and "uid" in u and "gid" in u else None


def held_keys(store):
    """The shifted copies' keys of every block an instance of `store` holds;
    the caller holds `lock(store)`."""
    held = set()
    for rec in store.records():
        try:
            key = block_key(rec.spec)
        except CtrError:
            continue
        if key:
            held.add(key)
    return held


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


USERXATTR = "userxattr"  # in a layer's .json: its opaque dirs have user.overlay.opaque


def mark_layers(layers):
    """Every layer but the bottom one (opaque means nothing there) marked for
    an overlay mounted with userxattr, once; its .json records that it was
    (two instances marking one layer at once set the same xattrs)."""
    from ctr.store import atomic_write_json

    for layer in layers[:-1]:
        meta_path = layer + ".json"
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            meta = None
        if meta is not None and meta.get(USERXATTR):
            continue
        _mark_opaque(layer)
        if meta is not None:
            atomic_write_json(meta_path, {**meta, USERXATTR: True})


def layers_dir(rec):
    return os.path.join(rec.dir, "layers")


def idmap_dir(rec):
    return os.path.join(rec.dir, "idmap")


IDMAP_ENV = "CTR_USERNS_IDMAP"
IDMAP_RECORD = "userns-idmap.json"


def use_idmap(root, ids):
    """Whether a new --userns=auto instance of the state root `root` gets
    idmapped layers: CTR_USERNS_IDMAP=on|off, else what the probe found on
    this kernel (probed on first use, recorded)."""
    mode = os.environ.get(IDMAP_ENV) or "auto"
    if mode not in ("auto", "on", "off"):
        raise CtrError(f"{IDMAP_ENV}={mode!r}: expected auto, on or off")
    if mode != "auto":
        return mode == "on"
    return host_idmap(root, ids)["idmap"]


def host_idmap(root, ids):
    """{"kernel", "idmap", "reason"}: the recorded probe of this kernel, made
    now when there is none."""
    from ctr.store import atomic_write_json

    path = os.path.join(root, IDMAP_RECORD)
    release = os.uname().release
    try:
        with open(path) as f:
            found = json.load(f)
        if found.get("kernel") == release and isinstance(found.get("idmap"), bool):
            return found
    except (OSError, ValueError):
        pass
    ok, reason = probe(root, ids)
    found = {"kernel": release, "idmap": ok, "reason": reason}
    atomic_write_json(path, found)
    return found


def _map_text(base, size=SIZE):
    return f"0 {base} {size}\n"


def open_idmapped(layers, ids, sc=None):
    """Host side: read-only idmapped copies of the folders `layers`, as
    detached mounts (fds, close-on-exec; the caller closes them): a file owned
    by id N on disk is seen owned by the block's N."""
    from ctr.native import SYSCALLS

    sc = sc or SYSCALLS
    userns_fd = sc.userns_fd(_map_text(ids["uid"], ids["size"]),
                             _map_text(ids["gid"], ids["size"]))
    fds = []
    try:
        for layer in layers:
            fds.append(sc.idmapped_tree(layer, userns_fd))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    finally:
        os.close(userns_fd)
    return fds


def idmapped_lower(rec, fds):
    """The overlay's lowerdir over idmapped layers attached at
    instances/NAME/idmap/0.. (top first), relative to that folder (short
    enough for any number of layers), and the [(fd, folder)] to attach."""
    base = idmap_dir(rec)
    attach = []
    for i, fd in enumerate(fds):
        folder = os.path.join(base, str(i))
        os.makedirs(folder, 0o755, exist_ok=True)
        attach.append((fd, folder))
    return (base, ":".join(str(i) for i in range(len(fds)))), attach


def probe(root, ids):
    """(ok, reason): does this kernel stack an unprivileged overlay on an
    idmapped layer of `root`'s filesystem? Tried for real, the way a start
    does it: a layer with a file owned by 0, idmapped into the block, attached
    and overlaid in a child of a user and mount namespace of its own, whose
    root must see the file as its own. Leaves nothing: the mounts were the
    child's alone."""
    import shutil
    import tempfile

    from ctr.native import CLONE_NEWNS, CLONE_NEWUSER, clone

    d = tempfile.mkdtemp(prefix=".idmap-probe-", dir=root)
    fds = []
    try:
        os.chmod(d, 0o711)
        layer, at, upper, work, merged = (os.path.join(d, n) for n in
                                          ("layer", "at", "upper", "work", "merged"))
        for path in (layer, at, upper, work, merged):
            os.mkdir(path, 0o755)
        for path in (upper, work, merged):
            os.chown(path, ids["uid"], ids["gid"])
        with open(os.path.join(layer, "f"), "w"):
            pass
        try:
            fds = open_idmapped([layer], ids)
        except OSError as err:
            return False, str(err)
        go_r, go_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            pid = clone(CLONE_NEWUSER | CLONE_NEWNS)
        except OSError as err:
            for fd in (go_r, go_w, rep_r, rep_w):
                os.close(fd)
            return False, f"clone: {err.strerror}"
        if pid == 0:
            os.close(go_w)
            os.close(rep_r)
            _probe_child(go_r, rep_w, fds[0], at, upper, work, merged)
        os.close(go_r)
        os.close(rep_w)
        try:
            write_maps(pid, ids)
        finally:
            os.close(go_w)
            with os.fdopen(rep_r, "rb") as f:
                said = f.read().decode(errors="replace")
            os.waitpid(pid, 0)
        return (True, "") if said == "ok" else (False, said or "the probe died")
    finally:
        for fd in fds:
            os.close(fd)
        shutil.rmtree(d, ignore_errors=True)


def _probe_child(go_r, rep_w, fd, at, upper, work, merged):
    from ctr.native import MS_PRIVATE, MS_REC, SYSCALLS

    said = "?"
    try:
        os.read(go_r, 1)  # EOF once the maps are written
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        SYSCALLS.mount(None, "/", None, MS_REC | MS_PRIVATE)
        SYSCALLS.attach_tree(fd, at)
        SYSCALLS.mount("overlay", merged, "overlay", 0,
                       f"lowerdir={at},upperdir={upper},workdir={work},userxattr")
        st = os.stat(os.path.join(merged, "f"))
        said = "ok" if (st.st_uid, st.st_gid) == (0, 0) else \
            f"the layer's file shows as {st.st_uid}:{st.st_gid}, not 0:0"
    except BaseException as err:  # noqa: BLE001 - every failure is the answer
        said = str(err) or type(err).__name__
    finally:
        os.write(rep_w, said.encode())
        os._exit(0)


def lower_layers(rec):
    """The folders of a --userns=auto instance's shifted layers, top first;
    None when one is gone."""
    many = layers_dir(rec)
    if os.path.isdir(many):
        out = [os.path.realpath(os.path.join(many, n))
               for n in sorted(os.listdir(many), key=int)]
        return out if all(os.path.isdir(d) for d in out) else None
    return [rec.lower] if os.path.isdir(rec.lower) else None  # a record of before


def lowerdir(rec):
    """The overlay's lowerdir of a --userns=auto instance: (its layers folder,
    0:1:.. relative to it), short whatever the number of layers; None when a
    layer is gone."""
    if lower_layers(rec) is None:
        return None
    many = layers_dir(rec)
    if os.path.isdir(many):
        return many, ":".join(str(i) for i in range(len(os.listdir(many))))
    return rec.lower


def create_record(store, image, spec):
    """The record of a --userns=auto instance of `image` (its record, as the
    image store reads it): a block of ids of its own (allocated under the
    lock, so two creates never share one) and, where idmapped layers cannot be
    had, links to the shifted copies of its layers (made when missing).
    Returns the record; on failure nothing is left but a whole cached copy."""
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
        ids = allocate(taken)
        if use_idmap(store.root, ids):
            ids["idmap"] = True
        spec = dataclasses.replace(spec, userns=ids)
        rec = store.create_record(spec)
    with Reverter() as revert:
        revert.add(rec.remove)
        folders = image["lowerdirs"]
        if ids.get("idmap"):
            mark_layers(folders)
        else:
            from ctr.images.layerstore import LayerStore

            layers = LayerStore(store.root)
            many = layers_dir(rec)
            os.mkdir(many, 0o755)
            for i, (layer_id, folder) in enumerate(zip(reversed(image["layers"]), folders,
                                                       strict=True)):
                copy = shifted_layer(layers, layer_id, folder, ids)
                os.symlink(os.path.relpath(copy, many), os.path.join(many, str(i)))
        for path in (rec.upper, rec.work, rec.rootfs):
            os.chown(path, ids["uid"], ids["gid"])
        os.chmod(rec.dir, 0o711)  # the container's root walks to its layers
        revert.success()
    return rec
