"""Unpacking one OCI layer (ctr.images.layers): what each member becomes, the diff ID,
and hostile layers, which write nothing outside the layer and leave nothing behind.
The layers are built here with tarfile. Ownership, device nodes, whiteouts and
trusted.* xattrs need root; those tests say so when skipped."""

import gzip
import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess
import sys
import tarfile

import pytest

from ctr.errors import Conflict, CtrError
from ctr.images.layers import unpack

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown, mknod, trusted.*")
MTIME = 1_600_000_000


# -- building layers -------------------------------------------------------------

def member(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, mtime=MTIME,
           linkname="", xattrs=None, dev=(0, 0)):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    info.linkname = linkname
    info.devmajor, info.devminor = dev
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in (xattrs or {}).items():
        info.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
    return info, data


def f(name, data=b"", **kw):
    return member(name, data=data, **kw)


def d(name, mode=0o755, **kw):
    return member(name, tarfile.DIRTYPE, mode=mode, **kw)


def sym(name, target, **kw):
    return member(name, tarfile.SYMTYPE, linkname=target, mode=0o777, **kw)


def hard(name, target):
    return member(name, tarfile.LNKTYPE, linkname=target)


def layer(*members, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def dest(tmp_path):
    """The layer's directory (not made yet); beside it `outside`, which must stay empty,
    and after the test nothing else (no temporary directory)."""
    (tmp_path / "outside").mkdir()
    yield tmp_path / "layer"
    assert os.listdir(tmp_path / "outside") == []
    left = sorted(set(os.listdir(tmp_path)) - {"outside", "layer"})
    assert not left, f"left behind: {left}"


def unpacked(dest, *members, **kw):
    unpack(io.BytesIO(layer(*members)), str(dest), **kw)
    return dest


# -- what members become ---------------------------------------------------------

@needs_root
def test_files_directories_owners_modes_and_mtimes(dest):
    unpacked(dest,
             d("./", mode=0o755, mtime=MTIME - 10),
             d("usr", mode=0o755, mtime=MTIME + 1),
             d("usr/bin", mode=0o750, uid=3, gid=4, mtime=MTIME + 2),
             f("usr/bin/su", b"#!su", mode=0o4755, mtime=MTIME + 3),
             f("usr/bin/wall", b"w", mode=0o2755, gid=5),
             d("tmp", mode=0o1777),
             f("home/u/.profile", b"x", mode=0o600, uid=1000, gid=1000))
    st = os.stat(dest / "usr/bin/su")
    assert stat.S_IMODE(st.st_mode) == 0o4755 and st.st_mtime == MTIME + 3
    assert (dest / "usr/bin/su").read_bytes() == b"#!su"
    assert stat.S_IMODE(os.stat(dest / "usr/bin/wall").st_mode) == 0o2755
    assert os.stat(dest / "usr/bin/wall").st_gid == 5
    assert stat.S_IMODE(os.stat(dest / "tmp").st_mode) == 0o1777
    # Directories' times are set after their content went in.
    bin_ = os.stat(dest / "usr/bin")
    assert (bin_.st_uid, bin_.st_gid, stat.S_IMODE(bin_.st_mode)) == (3, 4, 0o750)
    assert bin_.st_mtime == MTIME + 2 and os.stat(dest / "usr").st_mtime == MTIME + 1
    assert os.stat(dest).st_mtime == MTIME - 10
    # Parents the layer does not list are made 0755, root's.
    home = os.stat(dest / "home/u")
    assert (home.st_uid, stat.S_IMODE(home.st_mode)) == (0, 0o755)
    assert os.stat(dest / "home/u/.profile").st_uid == 1000


@needs_root
def test_a_whiteout_becomes_a_0_0_character_device(dest):
    unpacked(dest, d("etc"), f("etc/.wh.motd"), f(".wh.opt"))
    for path in (dest / "etc/motd", dest / "opt"):
        st = os.lstat(path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        assert (st.st_uid, st.st_gid) == (0, 0)
    assert sorted(os.listdir(dest / "etc")) == ["motd"]


@needs_root
def test_an_opaque_marker_sets_the_overlay_xattr_on_its_directory(dest):
    unpacked(dest, d("var"), d("var/cache"), f("var/cache/.wh..wh..opq"), f("var/cache/new"),
             f("var/.wh..wh.plnk"))
    assert os.getxattr(dest / "var/cache", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(dest / "var/cache")) == ["new"]
    assert os.listdir(dest / "var") == ["cache"]  # aufs bookkeeping is skipped
    with pytest.raises(OSError):
        os.getxattr(dest / "var", "trusted.overlay.opaque")


@needs_root
def test_a_whiteout_and_a_directory_of_the_same_layer_make_it_opaque(dest):
    unpacked(dest, d("a"), f("a/x"), f(".wh.a"), f(".wh.b"), d("b"), f("b/y"))
    for name in ("a", "b"):
        assert os.getxattr(dest / name, "trusted.overlay.opaque") == b"y"
    assert os.listdir(dest / "a") == ["x"] and os.listdir(dest / "b") == ["y"]


def test_hardlinks_share_the_inode(dest):
    unpacked(dest, f("bin/busybox", b"bb", mode=0o755), hard("bin/sh", "bin/busybox"),
             hard("sbin/init", "/bin/busybox"))
    st = os.stat(dest / "bin/busybox")
    assert st.st_nlink == 3
    assert os.stat(dest / "bin/sh").st_ino == st.st_ino == os.stat(dest / "sbin/init").st_ino


def test_symlinks_are_kept_verbatim_and_not_followed(dest, tmp_path):
    unpacked(dest, sym("etc/mtab", "/proc/self/mounts"), sym("up", "../../outside"),
             sym("lib", "usr/lib"), hard("hl", "up"))
    assert os.readlink(dest / "etc/mtab") == "/proc/self/mounts"
    assert os.readlink(dest / "up") == "../../outside"
    assert os.readlink(dest / "hl") == "../../outside"  # a hardlink of the symlink itself
    assert os.lstat(dest / "lib").st_mtime == MTIME


@needs_root
def test_device_nodes_and_fifos(dest):
    unpacked(dest, member("dev/null", tarfile.CHRTYPE, dev=(1, 3), mode=0o666),
             member("dev/loop0", tarfile.BLKTYPE, dev=(7, 0), mode=0o660, gid=6),
             member("run/fifo", tarfile.FIFOTYPE, mode=0o620))
    null, loop, fifo = (os.lstat(dest / p) for p in ("dev/null", "dev/loop0", "run/fifo"))
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666 and null.st_mtime == MTIME
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0) and loop.st_gid == 6
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o620


@needs_root
def test_xattrs_are_kept_but_not_the_ones_that_steer_overlayfs(dest):
    cap = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)  # cap_net_raw+ep, binary
    unpacked(dest,
             f("bin/ping", b"p", mode=0o755, xattrs={"security.capability": cap,
                                                     "user.note": b"hello"}),
             d("d", xattrs={"trusted.overlay.redirect": b"/etc", "user.dir": b"1"}),
             sym("s", "bin/ping", xattrs={"trusted.t": b"on-the-link"}))
    assert os.getxattr(dest / "bin/ping", "security.capability") == cap
    assert os.getxattr(dest / "bin/ping", "user.note") == b"hello"
    assert os.listxattr(dest / "d") == ["user.dir"]
    assert os.getxattr(dest / "s", "trusted.t", follow_symlinks=False) == b"on-the-link"


def test_file_content_with_zeros_and_holes_is_exact(dest):
    mib = 1 << 20
    data = b"head" + bytes(3 * mib) + b"middle" + bytes(2 * mib)  # ends in a hole
    unpacked(dest, f("sparse", data), f("empty"), f("zero", bytes(10)))
    assert (dest / "sparse").read_bytes() == data
    assert (dest / "empty").read_bytes() == b"" and (dest / "zero").read_bytes() == bytes(10)
    assert os.stat(dest / "sparse").st_blocks * 512 < 3 * mib


def test_a_later_member_replaces_an_earlier_one(dest):
    unpacked(dest, f("x", b"1"), f("x", b"2"),
             d("dir"), f("dir/inner"), f("dir", b"now a file"),
             f("file"), d("file"), f("file/inner", b"i"),
             d("same", mode=0o700), f("same/kept"), d("same", mode=0o755))
    assert (dest / "x").read_bytes() == b"2"
    assert (dest / "dir").read_bytes() == b"now a file"
    assert (dest / "file/inner").read_bytes() == b"i"
    assert os.listdir(dest / "same") == ["kept"]  # a directory over a directory merges
    assert stat.S_IMODE(os.stat(dest / "same").st_mode) == 0o755


# -- the stream: compression, diff ID, memory --------------------------------------

def test_the_diff_id_is_the_uncompressed_streams_digest_whatever_the_compression(tmp_path):
    tar = layer(f("a", b"a" * 5000), d("b"))
    plain = unpack(io.BytesIO(tar), str(tmp_path / "plain"))
    assert plain.diff_id == sha256(tar) and plain.size == len(tar)
    (tmp_path / "layer.tgz").write_bytes(gzip.compress(tar))
    zipped = unpack(str(tmp_path / "layer.tgz"), str(tmp_path / "gz"), diff_id=sha256(tar),
                    media_type="application/vnd.oci.image.layer.v1.tar+gzip")
    assert zipped == plain
    zst = subprocess.run(["zstd", "-q", "-c"], input=tar, stdout=subprocess.PIPE,
                         check=True).stdout
    assert unpack(io.BytesIO(zst), str(tmp_path / "zst"), diff_id=sha256(tar)) == plain
    assert (tmp_path / "zst/a").read_bytes() == b"a" * 5000


def test_an_empty_layer_is_an_empty_directory(tmp_path):
    tar = layer()  # what docker writes for a Dockerfile's ENV or LABEL step
    got = unpack(io.BytesIO(gzip.compress(tar)), str(tmp_path / "empty"), diff_id=sha256(tar))
    assert got.size == len(tar) == 10240
    assert os.listdir(tmp_path / "empty") == []
    assert stat.S_IMODE(os.stat(tmp_path / "empty").st_mode) == 0o755


def test_a_diff_id_mismatch_is_refused_and_leaves_nothing(dest):
    tar = layer(f("a", b"a"))
    with pytest.raises(CtrError, match="digest is " + sha256(tar)) as err:
        unpack(io.BytesIO(tar), str(dest), diff_id="sha256:" + "0" * 64)
    assert err.value.exit_code == 125
    assert not dest.exists()


@pytest.mark.parametrize("data, match", [
    (b"", "not a valid tar"),
    (b"\x1f\x8b\x08\x00garbage" * 10, "not a valid tar"),
    (b"\x28\xb5\x2f\xfd" + b"\x00" * 100, "zstd"),
    (None, "not a valid tar"),  # truncated in the middle of a member
])
def test_a_broken_stream_is_refused_and_leaves_nothing(dest, data, match):
    if data is None:
        data = layer(f("big", b"x" * 100_000))[:50_000]
    with pytest.raises(CtrError, match=match):
        unpack(io.BytesIO(data), str(dest))
    assert not dest.exists()


def test_unknown_media_types_and_digests_are_refused(dest):
    tar = layer(f("a"))
    with pytest.raises(CtrError, match="media type"):
        unpack(io.BytesIO(tar), str(dest),
               media_type="application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
    with pytest.raises(CtrError, match="diff ID"):
        unpack(io.BytesIO(tar), str(dest), diff_id="md5:abc")
    assert not dest.exists()


def test_an_existing_destination_is_a_conflict(dest):
    dest.mkdir()
    with pytest.raises(Conflict):
        unpack(io.BytesIO(layer(f("a"))), str(dest))
    dest.rmdir()


def test_losing_a_race_for_the_destination_is_a_conflict_and_leaves_nothing(dest):
    """Another unpack of the same layer renamed its directory into place first."""
    tar = io.BytesIO(layer(f("a", b"mine")))

    class Racing(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buf):
            n = tar.readinto(buf)
            if not n and not dest.exists():
                dest.mkdir()
                (dest / "a").write_bytes(b"theirs")
            return n

    with pytest.raises(Conflict, match="already exists"):
        unpack(Racing(), str(dest))
    assert (dest / "a").read_bytes() == b"theirs"
    shutil.rmtree(dest)


class Zeros(io.RawIOBase):
    def __init__(self, size):
        self.left = size

    def readable(self):
        return True

    def readinto(self, buf):
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def test_a_gzip_bomb_unpacks_with_bounded_memory(dest, tmp_path):
    """256 MiB of zeros in a 256 KiB layer: the unpacking process stays far below it,
    and so does the disk (the zeros are holes)."""
    size = 256 << 20
    path = tmp_path / "outside.tgz"
    with gzip.open(path, "wb", compresslevel=9) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("zeros")
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(size)))
    assert path.stat().st_size < size // 500, "not much of a bomb"
    # VmHWM, not ru_maxrss: Linux keeps the latter across execve, so a child
    # forked from a big pytest would report its parent's peak.
    script = ("import sys; from ctr.images.layers import unpack; "
              "unpack(sys.argv[1], sys.argv[2]); "
              "print([ln.split()[1] for ln in open('/proc/self/status') "
              "if ln.startswith('VmHWM:')][0])")
    try:
        out = subprocess.run([sys.executable, "-c", script, str(path), str(dest)],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
    finally:
        path.unlink()
    st = os.stat(dest / "zeros")
    assert st.st_size == size and st.st_blocks * 512 < size // 100  # holes, not zeros
    assert int(out) < 100 << 10, f"peak RSS {int(out) >> 10} MiB"


# -- hostile layers ----------------------------------------------------------------

HOSTILE = {
    "dot-dot": ([f("../outside/pwned")], "'..' component"),
    "dot-dot-inside": ([d("a"), f("a/../../outside/pwned")], "'..' component"),
    "symlink-to-root-then-under-it": (
        [sym("a", "/"), f("a/OUTSIDE/pwned")], "parent a is a symlink"),
    "symlink-to-parent-then-under-it": (
        [sym("a", ".."), f("a/outside/pwned")], "parent a is a symlink"),
    "directory-replaced-by-a-symlink": (
        [d("a"), f("a/x"), sym("a", "../outside"), f("a/pwned")], "parent a is a symlink"),
    "symlink-deep": ([d("x/y"), sym("x/y/z", "/"), f("x/y/z/w/pwned")],
                     "parent x/y/z is a symlink"),
    "hardlink-dot-dot": ([hard("h", "../../etc/passwd")], "'..' component"),
    "hardlink-absolute": ([hard("h", "/etc/passwd")], "not in this layer"),
    "hardlink-through-a-symlink": ([sym("s", "/etc"), hard("h", "s/passwd")],
                                   "parent s is a symlink"),
    "hardlink-to-a-directory": ([d("a"), hard("h", "a")], "directory"),
    "under-a-file": ([f("a"), f("a/b")], "parent a is not a directory"),
    "long-name": ([f("x" * 300)], "File name too long"),
    "huge-pax-header": ([f("y" * (2 << 20))], "extended header"),
    "whiteout-of-dot-dot": ([f("a/.wh..")], "whiteout of nothing"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_layer_is_refused_and_writes_nothing(dest, tmp_path, case):
    members, reason = HOSTILE[case]
    members = [(info.replace(name=info.name.replace("OUTSIDE", str(tmp_path / "outside"))), data)
               for info, data in members]
    nlink = os.stat("/etc/passwd").st_nlink
    with pytest.raises(CtrError, match=reason) as err:
        unpack(io.BytesIO(layer(*members)), str(dest))
    assert err.value.exit_code == 125
    assert "member '" in str(err.value) and "\n" not in str(err.value)
    assert not dest.exists()
    assert os.stat("/etc/passwd").st_nlink == nlink


def test_an_absolute_name_is_contained(dest, tmp_path):
    outside = tmp_path / "outside" / "pwned"
    unpacked(dest, f(str(outside), b"in"), f("/etc/passwd", b"mine"))
    assert (dest / str(outside).lstrip("/")).read_bytes() == b"in"
    assert (dest / "etc/passwd").read_bytes() == b"mine"


def test_a_deep_path_longer_than_path_max_is_fine(dest):
    deep = "/".join(["d" * 200] * 25)  # 5000 characters: only fd-relative calls reach it
    unpacked(dest, f(deep + "/leaf", b"deep"))
    fd = os.open(dest, os.O_RDONLY)
    try:
        for part in deep.split("/"):
            nxt = os.open(part, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        assert os.stat("leaf", dir_fd=fd).st_size == 4
    finally:
        os.close(fd)
    shutil.rmtree(dest)
