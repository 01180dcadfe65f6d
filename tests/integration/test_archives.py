"""Images in and out of files, against real peers: an OCI layout the tests build
(several layers, whiteouts, an opaque directory, hardlinks, symlinks) imported as a
directory and as an oci-archive; a docker archive written by `podman save` imported
and run; `ctr image save` read by skopeo and loaded and run by podman, in both
formats; commit and export of an instance; bad and hostile archives refused with one
line and nothing left in the state root.

podman keeps all its state in a folder of this module's own (--root, --runroot,
--tmpdir, vfs, cgroupfs, file events) and runs with runc; the host's podman state
is never touched."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

import pytest
from helpers import CTR, Ctr
from oci_helpers import mounts_of, remove_cgroup_tree
from ocilayout import image_manifest, tar_of, tar_of_tree, write_layout
from test_errors import assert_error

NONE = ("--network", "none")
ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")
# What podman and skopeo make on the host whatever their options say: removed
# after the module when it made them and they are then empty.
HOST_PATHS = ("/var/lib/containers/cache/blob-info-cache-v1.boltdb",
              "/var/lib/containers/cache", "/var/lib/containers",
              "/run/containers/networks", "/run/containers")
# What the layered image shows in a container: whiteouts, opaque dir, links.
CHECK = ("cat /etc/l2 /data/c /keep/k /keep/k2; readlink /link; "
         "test -e /etc/gone || echo gone-is-gone; test -e /data/a || echo opaque-hides; "
         "test -e /bin/vi || echo vi-whited-out; "
         "[ $(stat -c %i /keep/k) = $(stat -c %i /keep/hl) ] && echo hardlinked")
EXPECTED = ["two", "c", "k", "k2", "/etc/l2", "gone-is-gone", "opaque-hides",
            "vi-whited-out", "hardlinked"]

pytestmark = pytest.mark.skipif(not (shutil.which("podman") and shutil.which("skopeo")),
                                reason="podman and skopeo are not installed (make dev)")


def layers_of(busybox_image):
    base = tar_of_tree(os.path.join(busybox_image, "rootfs"))
    two = tar_of([("etc/l2", "file", b"two\n"), ("etc/gone", "file", b"x"),
                  ("data", "dir", None), ("data/a", "file", b"a"),
                  ("link", "symlink", "/etc/l2"), ("keep", "dir", None),
                  ("keep/k", "file", b"k\n"), ("keep/hl", "hardlink", "keep/k")])
    three = tar_of([("etc/gone", "whiteout", None), ("data", "opaque", None),
                    ("data/c", "file", b"c\n"), ("keep/k2", "file", b"k2\n"),
                    ("bin/vi", "whiteout", None)])
    return [base, two, three]


def make_layout(path, busybox_image, ref=None, cmd=("sh",)):
    """The three-layer image as an OCI layout at `path`; index.json names it `ref`
    (else the bare tag "image", as skopeo's oci:DIR:image)."""
    path = str(path)
    write_layout(path, [image_manifest(path, layers_of(busybox_image), cmd=cmd)])
    if ref:
        with open(os.path.join(path, "index.json")) as f:
            index = json.load(f)
        index["manifests"][0]["annotations"] = {"org.opencontainers.image.ref.name": ref}
        with open(os.path.join(path, "index.json"), "w") as f:
            json.dump(index, f)
    return path


def tar_dir(folder, out):
    subprocess.run(["tar", "-C", str(folder), "-cf", str(out), "."], check=True)
    return str(out)


def run_check(ctr, image):
    r = ctr("run", "--rm", *NONE, image, "sh", "-c", CHECK)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == EXPECTED, r.stdout


def assert_clean(ctr, images=("busybox",)):
    """Nothing of a refused import: no image record, staging folder, layer or blob."""
    assert sorted(os.listdir(ctr.path("images"))) == sorted(images)
    for sub in ("layers/sha256", "blobs/sha256"):
        path = ctr.path(sub)
        assert not os.path.isdir(path) or not os.listdir(path), os.listdir(path)


class Podman:
    def __init__(self, base):
        self.base = base
        self.argv = ["podman", "--root", f"{base}/root", "--runroot", f"{base}/run",
                     "--tmpdir", f"{base}/tmp", "--network-config-dir", f"{base}/net",
                     "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file", "--runtime", shutil.which("runc") or "runc"]

    def __call__(self, *args, timeout=180, check=True):
        r = subprocess.run([*self.argv, *args], capture_output=True, text=True,
                           timeout=timeout, cwd=self.base)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} -> {r.returncode}: {r.stderr}")
        return r

    def run(self, *args):
        return self("run", "--rm", "--network", "none", *ULIMITS, *args)


@pytest.fixture(scope="module")
def podman():
    base = tempfile.mkdtemp(prefix="ctr-archives-podman-")
    os.chmod(base, 0o711)
    had = {p for p in HOST_PATHS if os.path.exists(p)}
    had_libpod_parent = os.path.isdir("/sys/fs/cgroup/memory/libpod_parent")
    p = Podman(base)
    yield p
    p("rm", "--all", "--force", "--time", "0", check=False)
    p("rmi", "--all", "--force", check=False)
    left = mounts_of(base)
    if not had_libpod_parent:
        remove_cgroup_tree("libpod_parent")
    shutil.rmtree(base, ignore_errors=True)
    for path in HOST_PATHS:
        if path not in had:
            try:
                (os.unlink if path.endswith(".boltdb") else os.rmdir)(path)
            except OSError:
                pass
    assert not left, f"podman left mounts: {left}"


# -- OCI layouts and archives in -----------------------------------------------------

def test_import_an_oci_layout_directory_and_run_it(ctr, tmp_path, busybox_image):
    layout = make_layout(tmp_path / "layout", busybox_image)
    r = ctr("image", "import", layout, "layered")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "layered"
    img = json.loads(ctr("image", "inspect", "layered", check=True).stdout)[0]
    assert len(img["RootFS"]["Layers"]) == 3
    run_check(ctr, "layered")


def test_import_an_oci_archive_keeps_the_name_it_records(ctr, tmp_path, busybox_image):
    layout = make_layout(tmp_path / "layout", busybox_image, ref="example.org/t/layered:v2")
    archive = tar_dir(layout, tmp_path / "layered.tar")
    r = ctr("image", "import", archive)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "example.org/t/layered:v2"
    run_check(ctr, "example.org/t/layered:v2")
    # the layers are shared: a second import under another name adds none
    before = sorted(os.listdir(ctr.path("layers", "sha256")))
    assert ctr("image", "import", archive, "again").returncode == 0
    assert sorted(os.listdir(ctr.path("layers", "sha256"))) == before


def test_an_unnamed_layout_needs_a_name(ctr, tmp_path, busybox_image):
    layout = make_layout(tmp_path / "layout", busybox_image)  # ref name "image": a tag
    assert_error(ctr("image", "import", layout), 125, "has no name")
    assert_clean(ctr)


def test_a_multi_platform_layout_gives_the_hosts_image(ctr, tmp_path, busybox_image):
    path = str(tmp_path / "multi")
    layers = layers_of(busybox_image)
    amd = image_manifest(path, layers, cmd=("echo", "amd64"))
    arm = image_manifest(path, layers[:1], arch="arm64", cmd=("echo", "arm64"))
    write_layout(path, [amd, arm], as_index=True)
    assert ctr("image", "import", path, "multi").returncode == 0
    r = ctr("run", "--rm", *NONE, "multi")
    assert r.stdout == "amd64\n", r.stderr
    assert_error(ctr("image", "import", "--platform", "linux/s390x", path, "m2"), 125,
                 "no image for linux/s390x")


# -- docker archives from podman, and ctr's archives read by podman and skopeo -------

@pytest.fixture(scope="module")
def podman_archive(podman, tmp_path_factory, busybox_image):
    """A docker archive that `podman save` wrote, of the layered image."""
    work = tmp_path_factory.mktemp("podman-save")
    layout = make_layout(work / "layout", busybox_image, cmd=("cat", "/etc/l2"))
    podman("pull", "-q", f"oci:{layout}:image")
    podman("tag", podman("images", "-q").stdout.split()[0], "localhost/from-podman:v1")
    out = str(work / "podman.tar")
    podman("save", "--format", "docker-archive", "-o", out, "localhost/from-podman:v1")
    return out


def test_a_docker_archive_podman_saved_imports_and_runs(ctr, podman_archive):
    with tarfile.open(podman_archive) as t:
        assert "manifest.json" in t.getnames()
    r = ctr("image", "import", podman_archive)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "localhost/from-podman:v1"
    r = ctr("run", "--rm", *NONE, "localhost/from-podman:v1")
    assert r.stdout == "two\n", r.stderr  # its Cmd
    run_check(ctr, "localhost/from-podman:v1")


def test_load_reads_stdin_and_prints_the_names(ctr, podman_archive):
    with open(podman_archive, "rb") as f:
        r = subprocess.run([*ctr.prefix, CTR, "load", "-q"],
                           stdin=f, capture_output=True, text=True, env=ctr.env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "localhost/from-podman:v1\n"
    assert not [e for e in os.listdir(ctr.path("images")) if e.startswith(".")]


@pytest.mark.parametrize("fmt,transport", [("docker-archive", "docker-archive"),
                                           ("oci-archive", "oci-archive")])
def test_saved_archives_are_read_by_skopeo_and_run_by_podman(ctr, podman, tmp_path,
                                                             busybox_image, fmt, transport):
    layout = make_layout(tmp_path / "layout", busybox_image, cmd=("cat", "/data/c"))
    ctr("image", "import", layout, f"saved-{fmt}", check=True)
    out = str(tmp_path / "out.tar")
    r = ctr("image", "save", "--format", fmt, "-o", out, f"saved-{fmt}")
    assert r.returncode == 0, r.stderr
    info = json.loads(subprocess.run(["skopeo", "inspect", f"{transport}:{out}"], check=True,
                                     capture_output=True, text=True).stdout)
    assert len(info["Layers"]) == 3
    config = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"{transport}:{out}"],
                                       check=True, capture_output=True, text=True).stdout)
    assert config["config"]["Cmd"] == ["cat", "/data/c"]
    # skopeo copies it (checking every digest) into a layout of its own
    copy = str(tmp_path / "copy")
    subprocess.run(["skopeo", "copy", "-q", f"{transport}:{out}", f"oci:{copy}:x"], check=True,
                   capture_output=True)
    assert os.path.isfile(os.path.join(copy, "index.json"))
    loaded = podman("load", "-i", out).stdout
    assert f"localhost/saved-{fmt}:latest" in loaded, loaded
    r = podman.run(f"localhost/saved-{fmt}:latest")
    assert r.stdout == "c\n"
    r = podman.run(f"localhost/saved-{fmt}:latest", "sh", "-c", CHECK)
    assert r.stdout.split() == EXPECTED, r.stdout
    podman("rmi", f"localhost/saved-{fmt}:latest")


def test_save_and_load_keep_the_image_id(ctr, tmp_path, busybox_image):
    layout = make_layout(tmp_path / "layout", busybox_image)
    ctr("image", "import", layout, "kept", check=True)
    image_id = json.loads(ctr("image", "inspect", "kept", check=True).stdout)[0]["Id"]
    for fmt in ("docker-archive", "oci-archive"):
        out = str(tmp_path / f"{fmt}.tar")
        ctr("image", "save", "--format", fmt, "-o", out, "kept", check=True)
        other = Ctr(str(tmp_path / f"root-{fmt}"))
        try:
            r = other("load", "-i", out)
            assert r.stdout == "Loaded image: docker.io/library/kept:latest\n", r.stderr
            got = json.loads(other("image", "inspect", "kept:latest", check=True).stdout)[0]
            assert got["Id"] == image_id
        finally:
            shutil.rmtree(other.root, ignore_errors=True)


def test_load_of_an_archive_of_several_images(ctr, tmp_path, busybox_image):
    layout = make_layout(tmp_path / "layout", busybox_image)
    ctr("image", "import", layout, "first", check=True)
    ctr("run", "--name", "c", *NONE, "busybox", "sh", "-c", "echo x > /x", check=True)
    ctr("commit", "c", "second", check=True)
    out = str(tmp_path / "two.tar")
    ctr("save", "-o", out, "first", "second", "busybox", check=True)
    with tarfile.open(out) as t:
        manifest = json.load(t.extractfile("manifest.json"))
    assert len(manifest) == 3
    other = Ctr(str(tmp_path / "other"))
    try:
        r = other("load", "-i", out)
        assert r.returncode == 0, r.stderr
        assert sorted(r.stdout.splitlines()) == [
            f"Loaded image: docker.io/library/{n}:latest" for n in ("busybox", "first", "second")]
        assert other("run", "--rm", *NONE, "second", "cat", "/x").stdout == "x\n"
        run_check(other, "first")
    finally:
        shutil.rmtree(other.root, ignore_errors=True)


# -- commit and export -----------------------------------------------------------------

def test_commit_makes_the_changes_a_layer(ctr):
    ctr("run", "--name", "c", *NONE, "busybox", "sh", "-c",
        "echo hello > /root/new; rm /bin/vi; mkdir -p /d/e; ln -s /root/new /d/e/s",
        check=True)
    r = ctr("commit", "-m", "my change", "-a", "me", "-c", 'CMD ["cat", "/root/new"]',
            "-c", "ENV GREETING=hi", "-c", "WORKDIR /d", "c", "committed")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sha256:")
    base = json.loads(ctr("image", "inspect", "busybox", check=True).stdout)[0]
    img = json.loads(ctr("image", "inspect", "committed", check=True).stdout)[0]
    assert len(img["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1
    assert img["Id"] == r.stdout.strip()
    assert ctr("run", "--rm", *NONE, "committed").stdout == "hello\n"
    r = ctr("run", "--rm", *NONE, "committed", "sh", "-c",
            "echo $GREETING; pwd; readlink e/s; test -e /bin/vi || echo vi-deleted")
    assert r.stdout.split() == ["hi", "/d", "/root/new", "vi-deleted"], r.stderr
    # ctr's own files (hostname, hosts, resolv.conf) are not part of the layer
    layer = ctr.path("layers", *img["RootFS"]["Layers"][-1].split(":"))
    for name in ("hostname", "hosts", "resolv.conf"):
        assert not os.path.lexists(os.path.join(layer, "etc", name))


def test_commit_of_a_running_instance(ctr):
    ctr("run", "-d", "--name", "r", *NONE, "busybox", "sh", "-c",
        "echo up > /up; exec sleep 60", check=True)
    import time

    for _ in range(100):
        if ctr("exec", "r", "cat", "/up").stdout == "up\n":
            break
        time.sleep(0.1)
    ctr("commit", "r", "live", check=True)
    assert ctr.state("r")["status"] == "running"  # thawed again
    assert ctr("run", "--rm", *NONE, "live", "cat", "/up").stdout == "up\n"


def test_commit_refuses_a_bad_change_and_leaves_nothing(ctr):
    ctr("run", "--name", "c", *NONE, "busybox", "true", check=True)
    layers = os.listdir(ctr.path("layers")) if os.path.isdir(ctr.path("layers")) else []
    assert_error(ctr("commit", "-c", "FROM scratch", "c", "x"), 125, "invalid --change")
    assert_error(ctr("commit", "-c", "CMD [not json", "c", "x"), 125, "invalid --change")
    assert_error(ctr("commit", "nosuch", "x"), 125, "no such instance")
    assert sorted(os.listdir(ctr.path("images"))) == ["busybox"]
    if os.path.isdir(ctr.path("layers")):
        assert os.listdir(ctr.path("layers")) == layers


def test_export_writes_the_whole_root(ctr, tmp_path):
    ctr("run", "--name", "c", *NONE, "busybox", "sh", "-c",
        "echo hi > /hello; rm /bin/vi; ln /hello /hello2", check=True)
    out = str(tmp_path / "root.tar")
    r = ctr("export", "-o", out, "c")
    assert r.returncode == 0, r.stderr
    with tarfile.open(out) as t:
        names = {m.name: m for m in t.getmembers()}
        assert t.extractfile("hello").read() == b"hi\n"
    assert "bin/busybox" in names and "bin/sh" in names  # the image's layer
    assert "bin/vi" not in names  # deleted in the instance
    assert names["hello2"].islnk() and names["hello2"].linkname == "hello"
    assert not [n for n in names if ".wh." in n]
    # the tar imports back as a root filesystem
    assert ctr("image", "import", out, "exported").returncode == 0
    assert ctr("run", "--rm", *NONE, "exported", "cat", "/hello").stdout == "hi\n"
    assert_error(ctr("export", "-o", str(tmp_path / "x.tar"), "nosuch"), 125,
                 "no such instance")
    assert not os.path.exists(tmp_path / "x.tar")


# -- bad and hostile input ------------------------------------------------------------

def _docker_archive(path, layers, config=None, manifest=None, names=None):
    """A docker archive by hand: {member name: bytes}."""
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]
    config = config or {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                        "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdata = json.dumps(config).encode()
    cname = hashlib.sha256(cdata).hexdigest() + ".json"
    members = {cname: cdata}
    for t, d in zip(layers, diff_ids, strict=True):
        members[d[7:] + ".tar"] = t
    members["manifest.json"] = json.dumps(manifest or [{
        "Config": cname, "RepoTags": names or ["bad:latest"],
        "Layers": [d[7:] + ".tar" for d in diff_ids]}]).encode()
    with tarfile.open(path, "w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return str(path)


def _base(busybox_image):
    return tar_of_tree(os.path.join(busybox_image, "rootfs"))


BAD = {
    "missing": ("no such file", lambda tmp, bb: str(tmp / "missing.tar")),
    "not-an-archive": ("not a tar archive",
                       lambda tmp, bb: (tmp / "junk").write_bytes(os.urandom(4096)) and
                       str(tmp / "junk")),
    "truncated": ("not a valid tar archive", lambda tmp, bb: _truncated(tmp, bb)),
    "manifest-leaves": ("leaves the archive", lambda tmp, bb: _docker_archive(
        tmp / "a.tar", [_base(bb)], manifest=[{"Config": "../../etc/passwd", "Layers": []}])),
    "manifest-absolute": ("not a relative path", lambda tmp, bb: _docker_archive(
        tmp / "a.tar", [_base(bb)], manifest=[{"Config": "/etc/passwd", "Layers": []}])),
    "index-leaves": ("invalid digest", lambda tmp, bb: _bad_index(tmp, bb)),
    "config-digest": ("does not match its digest", lambda tmp, bb: _bad_config(tmp, bb)),
    "layer-digest": ("digest is", lambda tmp, bb: _bad_layer(tmp, bb)),
    "layer-blob-digest": ("does not match its digest", lambda tmp, bb: _bad_blob(tmp, bb)),
    "layer-dotdot": ("'..'", lambda tmp, bb: _docker_archive(
        tmp / "a.tar", [_base(bb), tar_of([("../../escaped", "file", b"x")])])),
    "layer-through-symlink": ("symlink", lambda tmp, bb: _docker_archive(
        tmp / "a.tar", [_base(bb), tar_of([("out", "symlink", str(tmp)),
                                           ("out/escaped", "file", b"x")])])),
    "layout-blob-symlink": ("symlink", lambda tmp, bb: _symlinked_blob(tmp, bb)),
}


def _truncated(tmp, bb):
    whole = _docker_archive(tmp / "whole.tar", [_base(bb)])
    data = open(whole, "rb").read()
    (tmp / "cut.tar").write_bytes(data[:len(data) // 2])
    os.unlink(whole)
    return str(tmp / "cut.tar")


def _bad_index(tmp, bb):
    layout = make_layout(tmp / "layout", bb, ref="example.org/bad:1")
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    index["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    return layout


def _bad_config(tmp, bb):
    """The docker archive's config is named after a digest it does not have."""
    path = _docker_archive(tmp / "a.tar", [_base(bb)])
    with tarfile.open(path) as t:
        members = {m.name: t.extractfile(m).read() for m in t.getmembers()}
    cname = next(n for n in members if n.endswith(".json") and n != "manifest.json")
    members[cname] = members[cname].replace(b'"sh"', b'"ls"')
    with tarfile.open(path, "w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _bad_layer(tmp, bb):
    """An OCI layout whose layer blob is not the one its config names."""
    layout = make_layout(tmp / "layout", bb, ref="example.org/bad:1")
    blobs = os.path.join(layout, "blobs", "sha256")
    with open(os.path.join(layout, "index.json")) as f:
        mdigest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(blobs, mdigest[7:])) as f:
        manifest = json.load(f)
    import gzip

    top = os.path.join(blobs, manifest["layers"][-1]["digest"][7:])
    with open(top, "wb") as f:
        f.write(gzip.compress(tar_of([("other", "file", b"not the layer")])))
    return layout


def _bad_blob(tmp, bb):
    """An OCI layout whose top layer has the right content (diff ID) but is not the
    blob its name and descriptor say (compressed again, differently)."""
    import gzip

    layout = make_layout(tmp / "layout", bb, ref="example.org/bad:1")
    blobs = os.path.join(layout, "blobs", "sha256")
    with open(os.path.join(layout, "index.json")) as f:
        mdigest = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(blobs, mdigest[7:])) as f:
        manifest = json.load(f)
    top = os.path.join(blobs, manifest["layers"][-1]["digest"][7:])
    with open(top, "rb") as f:
        data = gzip.decompress(f.read())
    with open(top, "wb") as f:
        f.write(gzip.compress(data, compresslevel=1, mtime=12345))
    return layout


def _symlinked_blob(tmp, bb):
    """A layout whose manifest blob is a symlink out of it."""
    layout = make_layout(tmp / "layout", bb, ref="example.org/bad:1")
    with open(os.path.join(layout, "index.json")) as f:
        mdigest = json.load(f)["manifests"][0]["digest"]
    blob = os.path.join(layout, "blobs", "sha256", mdigest[7:])
    shutil.move(blob, tmp / "outside.json")
    os.symlink(str(tmp / "outside.json"), blob)
    return layout


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_archives_are_refused_and_leave_nothing(ctr, tmp_path, busybox_image, case):
    fragment, make = BAD[case]
    path = make(tmp_path, busybox_image)
    assert_error(ctr("image", "import", path, "bad"), 125, fragment)
    assert_clean(ctr)
    if os.path.isfile(path) or case == "missing":
        assert_error(ctr("load", "-i", path), 125, fragment)
        assert_clean(ctr)
    assert not os.path.exists(tmp_path / "escaped")
    assert not os.path.exists("/escaped")


def test_a_symlink_of_one_layer_does_not_lead_a_later_layer_out(ctr, tmp_path,
                                                                  busybox_image):
    """Each layer is unpacked into its own folder: a later layer's out/escaped lands
    in that layer's own out/, never through the earlier layer's symlink."""
    path = _docker_archive(tmp_path / "a.tar", [
        _base(busybox_image), tar_of([("out", "symlink", str(tmp_path))]),
        tar_of([("out", "dir", None), ("out/escaped", "file", b"x\n")])])
    assert ctr("image", "import", path, "contained").returncode == 0
    assert not os.path.exists(tmp_path / "escaped")
    r = ctr("run", "--rm", *NONE, "contained", "cat", "/out/escaped")
    assert r.stdout == "x\n", r.stderr


def test_kill_9_during_an_import_leaves_what_prune_removes(ctr, tmp_path, busybox_image):
    import signal
    import time

    many = tar_of([("many", "dir", None)] + [(f"many/f{i}", "file", os.urandom(64))
                                            for i in range(20000)])
    path = str(tmp_path / "big")
    write_layout(path, [image_manifest(path, [_base(busybox_image), many])])
    proc = ctr.popen("image", "import", path, "big")
    layers = ctr.path("layers", "sha256")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if os.path.isdir(layers) and [e for e in os.listdir(layers) if ".tmp-" in e]:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the import ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert "big" not in os.listdir(ctr.path("images"))  # no record
    r = ctr("image", "prune")
    assert r.returncode == 0, r.stderr
    assert_clean(ctr)
    r = ctr("image", "import", path, "big")
    assert r.returncode == 0, r.stderr
    assert ctr("run", "--rm", *NONE, "big", "test", "-s", "/many/f19999").returncode == 0


def test_save_refuses_what_it_cannot_write(ctr, tmp_path):
    assert_error(ctr("image", "save", "-o", str(tmp_path / "x.tar"), "nosuch"), 125,
                 "no such image")
    assert_error(ctr("image", "save", "--format", "tar", "-o", str(tmp_path / "x.tar"),
                     "busybox"), 125, "invalid value")
    assert_error(ctr("image", "save", "-o", str(tmp_path / "no" / "x.tar"), "busybox"), 125)
    assert not os.listdir(tmp_path) or os.listdir(tmp_path) == ["root"]
    assert sorted(os.listdir(ctr.path("images"))) == ["busybox"]
