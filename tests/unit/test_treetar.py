"""Folders back into tar streams (ctr.images.treetar): a layer unpacked by
ctr.images.layers and written again keeps its members, its OCI whiteouts and opaque
directories, and its diff ID; the union of layers follows overlayfs's rules; a
symlink is never followed. Whiteouts are 0/0 character devices and opaque dirs a
trusted.* xattr: those tests need root and say so when skipped."""

import hashlib
import io
import os
import tarfile

import pytest

from ctr.images.layers import unpack
from ctr.images.treetar import HashingWriter, open_tar, write_layer, write_merged

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: mknod, trusted.*")
MTIME = 1_600_000_000


def layer(*members):
    """A tar of [(name, kind, arg)]: file (bytes), dir, symlink, hardlink (target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, arg in members:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = MTIME, 0o755 if kind == "dir" else 0o644
            if kind == "file":
                info.size = len(arg)
                t.addfile(info, io.BytesIO(arg))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                         "hardlink": tarfile.LNKTYPE}[kind]
            info.linkname = arg or ""
            t.addfile(info)
    return buf.getvalue()


def written(fn, *args, **kw):
    buf = io.BytesIO()
    out = HashingWriter(buf)
    with open_tar(out) as tar:
        fn(tar, *args, **kw)
    return buf.getvalue(), out.digest()


def members(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: m for m in t.getmembers()}


def unpacked(tmp_path, name, data):
    dest = str(tmp_path / name)
    unpack(io.BytesIO(data), dest)
    return dest


@needs_root
def test_whiteouts_and_opaque_dirs_round_trip(tmp_path):
    src = layer(("etc", "dir", None), ("etc/.wh.gone", "file", b""),
                ("data", "dir", None), ("data/.wh..wh..opq", "file", b""),
                ("data/new", "file", b"n"), ("keep", "file", b"k"),
                ("hl", "hardlink", "keep"), ("link", "symlink", "/keep"))
    folder = unpacked(tmp_path, "l", src)
    assert os.stat(os.path.join(folder, "etc", "gone")).st_rdev == 0  # overlayfs's whiteout
    data, diff_id = written(write_layer, folder)
    got = members(data)
    assert sorted(got) == ["data", "data/.wh..wh..opq", "data/new", "etc", "etc/.wh.gone",
                           "hl", "keep", "link"]
    # the first name (sorted) carries the content, the other links to it
    assert got["hl"].isfile() and got["keep"].islnk() and got["keep"].linkname == "hl"
    assert got["link"].issym() and got["link"].linkname == "/keep"
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in got.values()
                   for k in m.pax_headers)
    # unpacked again and written again: the same bytes, so the same diff ID
    again = unpacked(tmp_path, "again", data)
    assert written(write_layer, again)[1] == diff_id == \
        "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_layer_keeps_modes_owners_and_xattrs(tmp_path):
    folder = tmp_path / "l"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(folder / "bin" / "tool", 0o4755)
    os.setxattr(folder / "bin" / "tool", "user.note", b"\xff\x00binary")
    got = members(written(write_layer, str(folder))[0])
    tool = got["bin/tool"]
    assert tool.mode == 0o4755 and tool.size == 10
    back = unpacked(tmp_path, "back", written(write_layer, str(folder))[0])
    assert os.getxattr(os.path.join(back, "bin", "tool"), "user.note") == b"\xff\x00binary"


def test_skip_leaves_names_out(tmp_path):
    folder = tmp_path / "l"
    (folder / "etc").mkdir(parents=True)
    for name in ("hosts", "hostname", "motd"):
        (folder / "etc" / name).write_text(name)
    got = members(written(write_layer, str(folder), skip=("etc/hosts", "etc/hostname"))[0])
    assert sorted(got) == ["etc", "etc/motd"]


@needs_root
def test_the_union_follows_overlayfs_rules(tmp_path):
    bottom = unpacked(tmp_path, "bottom", layer(
        ("a", "dir", None), ("a/one", "file", b"1"), ("b", "dir", None),
        ("b/old", "file", b"o"), ("c", "file", b"c"), ("d", "dir", None),
        ("d/x", "file", b"x")))
    top = unpacked(tmp_path, "top", layer(
        ("a", "dir", None), ("a/two", "file", b"2"), ("b", "dir", None),
        ("b/.wh..wh..opq", "file", b""), ("b/new", "file", b"n"), (".wh.c", "file", b""),
        ("d", "file", b"now a file")))
    got = members(written(write_merged, [top, bottom])[0])
    assert sorted(got) == ["a", "a/one", "a/two", "b", "b/new", "d"]
    assert got["d"].isfile() and got["d"].size == len(b"now a file")
    assert not [n for n in got if ".wh." in n]


def test_an_id_map_shifts_owners_back(tmp_path):
    folder = tmp_path / "l"
    folder.mkdir()
    (folder / "f").write_text("x")
    (folder / "g").write_text("y")
    if os.geteuid() == 0:
        os.chown(folder / "f", 100000 + 5, 100000 + 7)
        os.chown(folder / "g", 3, 3)  # outside the map: nobody
    got = members(written(write_layer, str(folder), idmap=(100000, 100000, 65536))[0])
    if os.geteuid() == 0:
        assert (got["f"].uid, got["f"].gid) == (5, 7)
        assert (got["g"].uid, got["g"].gid) == (65534, 65534)


def test_a_symlink_is_written_never_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    folder = tmp_path / "l"
    folder.mkdir()
    os.symlink(str(secret), folder / "file")
    os.symlink(str(tmp_path), folder / "dir")
    got = members(written(write_layer, str(folder))[0])
    assert sorted(got) == ["dir", "file"]
    assert got["file"].issym() and got["dir"].issym()
    assert written(write_merged, [str(folder)])[0].find(b"host secret") == -1
