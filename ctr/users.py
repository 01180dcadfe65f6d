"""Users and groups of an instance's root: docker's -u looked up in its
/etc/passwd and /etc/group (the container's init, after pivot_root; the VM
driver, from the host through the root's path)."""

from ctr.process import InitFailure


def _read_db(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip()
                    and not line.startswith("#")]
    except FileNotFoundError:
        return []


def _in_root(root, path):
    """`path` of a root seen from outside it (a VM's overlay, from the host):
    its symlinks are resolved inside that root, never on the host."""
    if root == "/":
        return path
    from ctr.native import SYSCALLS
    from ctr.rootfs import resolve_in_root

    return resolve_in_root(SYSCALLS, root.rstrip("/"), path)


def resolve_user(user, root="/"):
    """docker's -u: NAME, UID, NAME:GROUP or UID:GID, looked up in the container's
    /etc/passwd and /etc/group. Returns (uid, gid, supplementary gids, home).
    Raises InitFailure for a name that is not there."""
    name, _, group = (user or "0").partition(":")
    passwd = [e for e in _read_db(_in_root(root, "/etc/passwd")) if len(e) >= 7]
    groups = [e for e in _read_db(_in_root(root, "/etc/group")) if len(e) >= 4]
    entry = next((e for e in passwd if e[0] == name or (name.isdigit() and e[2] == name)), None)
    if entry is None and not name.isdigit():
        raise InitFailure(f"unable to find user {name}: no matching entries in /etc/passwd")
    if entry:
        uid, gid, home, login = int(entry[2]), int(entry[3]), entry[5], entry[0]
    else:
        uid, gid, home, login = int(name), 0, "/", None
    if group:
        g = next((e for e in groups if e[0] == group or (group.isdigit() and e[2] == group)),
                 None)
        if g is None and not group.isdigit():
            raise InitFailure(f"unable to find group {group}: no matching entries in /etc/group")
        gid = int(g[2]) if g else int(group)
    extra = sorted({int(e[2]) for e in groups
                    if login and login in e[3].split(",") and e[2].isdigit()} | {gid})
    return uid, gid, extra, home or "/"


def resolve_groups(names, root="/"):
    """--group-add: each a group name of the root's /etc/group, or a number;
    their gids. InitFailure for a name that is not there."""
    groups = [e for e in _read_db(_in_root(root, "/etc/group")) if len(e) >= 3]
    out = []
    for name in names:
        if name.isdigit():
            out.append(int(name))
            continue
        g = next((e for e in groups if e[0] == name and e[2].isdigit()), None)
        if g is None:
            raise InitFailure(f"--group-add {name}: no such group in the image's /etc/group")
        out.append(int(g[2]))
    return out
