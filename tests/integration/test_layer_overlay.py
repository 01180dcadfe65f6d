"""Layers unpacked by ctr.images.layers, stacked as overlayfs lowerdirs on the real
kernel: the merged view is what docker shows for the same image (deleted files gone,
an opaque directory shows only the upper layers' content). Root; each mount is made
in a private mount namespace (unshare -m), so nothing is left mounted."""

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap

from ctr.images.layers import unpack

MTIME = 1_600_000_000

# Walks the merged view of `lowerdir` (and an upper, if given) in a mount namespace
# of its own and prints it as JSON: path -> [kind, mode, content or link target].
WALK = textwrap.dedent("""
    import json, os, stat, subprocess, sys
    merged, lower, upper, work, action = sys.argv[1:6]
    opts = "lowerdir=" + lower + (f",upperdir={upper},workdir={work}" if upper else "")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, merged], check=True)
    if action:
        exec(action)
    seen = {}
    for top, dirs, files in os.walk(merged):
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, merged)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                seen[rel] = ["link", 0, os.readlink(path)]
            elif stat.S_ISDIR(st.st_mode):
                seen[rel] = ["dir", mode, ""]
            elif stat.S_ISCHR(st.st_mode):
                seen[rel] = ["chr", mode, f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"]
            else:
                with open(path, "rb") as f:
                    seen[rel] = ["file", mode, f.read().decode()]
    print(json.dumps(seen))
""")


def member(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, linkname="", dev=(0, 0)):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.linkname = kind, mode, MTIME, linkname
    info.devmajor, info.devminor = dev
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def layer(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def merged(tmp_path, layers, upper=False, action=""):
    """Unpack `layers` (lowest first) and return the overlay's merged view."""
    dirs = []
    for i, tar in enumerate(layers):
        dest = tmp_path / f"layer{i}"
        unpack(io.BytesIO(tar), str(dest))
        dirs.append(str(dest))
    for sub in ("merged", "upper", "work"):
        (tmp_path / sub).mkdir(exist_ok=True)
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", WALK,
         str(tmp_path / "merged"), ":".join(reversed(dirs)),
         str(tmp_path / "upper") if upper else "", str(tmp_path / "work"), action],
        stdout=subprocess.PIPE, text=True, check=True).stdout
    return json.loads(out)


BASE = layer(
    member("etc", tarfile.DIRTYPE, mode=0o755),
    member("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
    member("etc/motd", data=b"hello\n"),
    member("etc/keep", data=b"v1\n"),
    member("usr/share/doc/a", data=b"a"),
    member("usr/share/doc/b", data=b"b"),
    member("var/cache/old1", data=b"1"),
    member("var/cache/sub/old2", data=b"2"),
    member("bin/busybox", data=b"bb", mode=0o755),
    member("bin/sh", tarfile.LNKTYPE, linkname="bin/busybox"),
    member("bin/su", data=b"su", mode=0o4755),
    member("lib", tarfile.SYMTYPE, linkname="usr/lib", mode=0o777),
    member("usr/lib/libc.so", data=b"libc"),
    member("dev/null", tarfile.CHRTYPE, dev=(1, 3), mode=0o666),
)
DELETES = layer(
    member("etc/.wh.motd"),
    member("etc/new", data=b"new\n"),
    member("usr/share/.wh.doc"),
    member("var/cache/.wh..wh..opq"),
    member("var/cache/fresh", data=b"f"),
)
READDS = layer(
    member("usr/share/doc/c", data=b"c"),
    member("bin/.wh.sh"),
    member("etc/keep", data=b"v3\n"),
)


def test_the_merged_view_of_three_layers_is_dockers(tmp_path):
    view = merged(tmp_path, [BASE, DELETES, READDS])
    files = {path: entry for path, entry in view.items() if entry[0] != "dir"}
    assert files == {
        "etc/passwd": ["file", 0o644, "root:x:0:0::/root:/bin/sh\n"],
        "etc/keep": ["file", 0o644, "v3\n"],
        "etc/new": ["file", 0o644, "new\n"],
        "usr/share/doc/c": ["file", 0o644, "c"],  # deleted, then made again: only c
        "var/cache/fresh": ["file", 0o644, "f"],  # opaque: none of the base's content
        "bin/busybox": ["file", 0o755, "bb"],
        "bin/su": ["file", 0o4755, "su"],
        "lib": ["link", 0, "usr/lib"],
        "usr/lib/libc.so": ["file", 0o644, "libc"],
        "dev/null": ["chr", 0o666, "1:3"],
    }
    assert sorted(p for p, e in view.items() if e[0] == "dir") == [
        "bin", "dev", "etc", "usr", "usr/lib", "usr/share", "usr/share/doc", "var",
        "var/cache"]


def test_an_instance_upper_over_the_layers_sees_and_deletes_them(tmp_path):
    view = merged(tmp_path, [BASE, DELETES], upper=True,
                  action="os.unlink(merged + '/etc/passwd'); "
                         "open(merged + '/etc/motd', 'w').write('mine')")
    assert "etc/passwd" not in view and view["etc/motd"] == ["file", 0o644, "mine"]
    st = os.lstat(tmp_path / "upper/etc/passwd")  # the kernel's own whiteout, like ours
    assert (st.st_mode & 0o170000, st.st_rdev) == (0o020000, 0)


def test_a_symlink_in_a_lower_layer_does_not_redirect_a_later_layer(tmp_path):
    """A base layer's `etc -> /`, then `etc/pwned` in the next: each layer is unpacked
    alone, so the second makes a real directory; the host's /etc is untouched and the
    merged view shows the upper directory."""
    escape = layer(member("etc", tarfile.SYMTYPE, linkname="/", mode=0o777),
                   member("tmp", tarfile.SYMTYPE, linkname=str(tmp_path), mode=0o777))
    under = layer(member("etc/ctr-layers-pwned", data=b"x"),
                  member("tmp/outside", data=b"x"))
    view = merged(tmp_path, [escape, under])
    assert not os.path.exists("/etc/ctr-layers-pwned")
    assert not os.path.exists(tmp_path / "outside")
    assert view["etc"][0] == "dir" and view["etc/ctr-layers-pwned"][0] == "file"
    assert os.readlink(tmp_path / "layer0/etc") == "/"
