"""Pull from a real registry (the distribution's docker-registry on 127.0.0.1 in the
suite's network namespace), the layer store, and running what was pulled."""

import json
import os
import subprocess

import pytest
from helpers import Ctr, leftovers
from ocilayout import Registry, image_manifest, push, tar_of, tar_of_tree, write_layout
from test_errors import assert_error

TLS = "--tls-verify=false"


class Images:
    """What the module's registry holds."""


@pytest.fixture(scope="module")
def reg(tmp_path_factory, busybox_image):
    work = tmp_path_factory.mktemp("registry")
    registry = Registry(str(work / "registry"))
    try:
        imgs = Images()
        imgs.addr = registry.addr
        base = tar_of_tree(os.path.join(busybox_image, "rootfs"))
        two = tar_of([("etc/l2", "file", b"two\n"), ("etc/gone", "file", b"x"),
                      ("data", "dir", None), ("data/a", "file", b"a"),
                      ("data/hl", "hardlink", "data/a"), ("link", "symlink", "/etc/l2"),
                      ("keep", "dir", None), ("keep/k", "file", b"k")])
        three = tar_of([("etc/gone", "whiteout", None), ("data", "opaque", None),
                        ("data/c", "file", b"c"), ("keep/k2", "file", b"k2")])
        lay = str(work / "layered")
        write_layout(lay, [image_manifest(lay, [base, two, three])])
        imgs.layered = f"{registry.addr}/test/layered:v1"
        imgs.layered_digest = push(lay, imgs.layered)
        other = str(work / "other")
        write_layout(other, [image_manifest(other, [base, tar_of([("other", "file", b"o\n")])],
                                            cmd=("cat", "/other"))])
        imgs.other = f"{registry.addr}/test/other:v1"
        push(other, imgs.other)
        multi = str(work / "multi")
        write_layout(multi, [
            image_manifest(multi, [base, tar_of([("arch", "file", arch.encode())])], arch=arch)
            for arch in ("amd64", "arm64")], as_index=True)
        imgs.multi = f"{registry.addr}/test/multi:v1"
        push(multi, imgs.multi, multi=True)
        evil = str(work / "evil")
        write_layout(evil, [image_manifest(evil, [base, tar_of([("../../escaped", "file",
                                                                 b"x")])])])
        imgs.evil = f"{registry.addr}/test/evil:v1"
        push(evil, imgs.evil)
        bad = str(work / "bad")
        write_layout(bad, [image_manifest(bad, [base], diff_ids=["sha256:" + "0" * 64])])
        imgs.bad = f"{registry.addr}/test/bad:v1"
        push(bad, imgs.bad)
        many = str(work / "many")
        write_layout(many, [image_manifest(many, [base] + [
            tar_of([(f"f{i}", "file", str(i).encode())]) for i in range(149)])])
        imgs.many = f"{registry.addr}/test/many:v1"
        push(many, imgs.many)
        yield imgs
    finally:
        registry.stop()


def records(ctr):
    return {i["name"]: i for i in json.loads(ctr("image", "ls", "--format", "json").stdout)}


def layer_dirs(ctr):
    d = ctr.path("layers", "sha256")
    return sorted(e for e in os.listdir(d) if len(e) == 64) if os.path.isdir(d) else []


def assert_nothing_left(ctr):
    """After a refused pull: no layer, blob, record, temp dir or half-unpacked layer."""
    assert layer_dirs(ctr) == []
    for sub in ("layers/sha256", "blobs/sha256"):
        d = ctr.path(*sub.split("/"))
        assert not os.path.isdir(d) or os.listdir(d) == [], (sub, os.listdir(d))
    assert sorted(os.listdir(ctr.path("images"))) == ["busybox"]


def test_pull_then_run_shows_the_layers_as_docker_does(ctr, reg):
    r = ctr("pull", TLS, reg.layered)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [reg.layered, r.stdout.split()[1]] and r.stderr == ""
    img = records(ctr)[reg.layered]
    assert img["digest"] == reg.layered_digest and len(img["layers"]) == 3
    assert img["config"]["Labels"] == {"test": "yes"} and img["architecture"] == "amd64"
    assert len(layer_dirs(ctr)) == 3
    r = ctr("run", "--rm", "--network", "none", reg.layered, "sh", "-c",
            "cat /etc/l2; ls /data; ls /keep; test -e /etc/gone || echo gone; "
            "readlink /link; echo new > /data/w; cat /data/w")
    assert r.returncode == 0, r.stderr
    # the whiteout hides /etc/gone, the opaque /data hides a and hl, /keep merges
    assert r.stdout.split("\n") == ["two", "c", "k", "k2", "gone", "/etc/l2", "new", ""]
    # the layers were never written to
    assert not any(os.path.exists(os.path.join(ctr.path("layers", "sha256", d), "data", "w"))
                   for d in layer_dirs(ctr))
    table = ctr("image", "ls").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(line.split()[:3] == [reg.layered.rsplit(":", 1)[0], "v1",
                                    img["id"][7:19]] for line in table)


def test_hardlinks_and_symlinks_kept_in_their_layer(ctr, reg):
    ctr("pull", TLS, reg.layered, check=True)
    two = os.path.join(ctr.path("layers"), *records(ctr)[reg.layered]["layers"][1].split(":"))
    assert os.stat(f"{two}/data/a").st_ino == os.stat(f"{two}/data/hl").st_ino
    assert os.readlink(f"{two}/link") == "/etc/l2"


def test_the_image_command_runs(ctr, reg):
    ctr("pull", TLS, reg.other, check=True)
    r = ctr("run", "--rm", "--network", "none", reg.other)  # its Cmd: cat /other
    assert r.returncode == 0 and r.stdout == "o\n", r.stderr


def test_run_pulls_when_missing_and_never_refuses(ctr, reg):
    assert_error(ctr("run", "--rm", "--pull", "never", reg.layered, "true"), 125,
                 "no such image", "--pull never")
    assert_nothing_left(ctr)
    r = ctr("run", "--rm", TLS, "--network", "none", reg.layered, "cat", "/etc/l2")
    assert r.returncode == 0 and r.stdout == "two\n", r.stderr
    assert reg.layered in records(ctr)
    # --pull always fetches it again (nothing new to unpack) and runs it
    r = ctr("run", "--rm", TLS, "--pull", "always", "--network", "none", reg.layered, "true")
    assert r.returncode == 0, r.stderr
    assert len(layer_dirs(ctr)) == 3


def test_pull_by_digest(ctr, reg):
    ref = reg.layered.rsplit(":", 1)[0] + "@" + reg.layered_digest
    r = ctr("image", "pull", TLS, ref)
    assert r.returncode == 0, r.stderr
    assert records(ctr)[ref]["digest"] == reg.layered_digest
    r = ctr("run", "--rm", "--network", "none", ref, "cat", "/etc/l2")
    assert r.stdout == "two\n", r.stderr
    assert "<none>" in ctr("image", "ls").stdout


def test_multi_platform_index(ctr, reg):
    ctr("pull", TLS, reg.multi, check=True)
    r = ctr("run", "--rm", "--network", "none", reg.multi, "cat", "/arch")
    assert r.stdout == "amd64", r.stderr
    ctr("image", "rm", reg.multi, check=True)
    ctr("pull", TLS, "--platform", "linux/arm64", reg.multi, check=True)
    img = records(ctr)[reg.multi]
    assert img["architecture"] == "arm64"
    top = os.path.join(ctr.path("layers"), *img["layers"][-1].split(":"))
    with open(os.path.join(top, "arch")) as f:
        assert f.read() == "arm64"
    assert_error(ctr("pull", TLS, "--platform", "linux", reg.multi), 125, "invalid platform")


def test_many_layers_mount_by_short_names(ctr, reg):
    """150 layers under a long state root: the full paths take ~18 kB, past the
    page a mount's options get; the short relative names fit."""
    ctr("pull", TLS, reg.many, check=True)
    r = ctr("run", "--rm", "--network", "none", reg.many, "sh", "-c",
            "cat /f0 /f148; ls / | grep -c '^f'")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "0148149\n"


def test_two_images_store_their_base_once(ctr, reg):
    ctr("pull", TLS, reg.layered, check=True)
    ctr("pull", TLS, reg.other, check=True)
    imgs = records(ctr)
    assert imgs[reg.layered]["layers"][0] == imgs[reg.other]["layers"][0]
    assert len(layer_dirs(ctr)) == 4  # base + two + three + other


def test_concurrent_pulls_sharing_layers(ctr, reg):
    procs = [ctr.popen("pull", TLS, ref) for ref in (reg.layered, reg.other) * 2]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert len(layer_dirs(ctr)) == 4
    assert not [e for e in os.listdir(ctr.path("layers", "sha256")) if ".tmp-" in e]


@pytest.mark.parametrize("which, message", [("evil", "'..' component"),
                                            ("bad", "refused, the content's digest")])
def test_hostile_image_is_refused_and_leaves_nothing(ctr, reg, tmp_path, which, message):
    ref = getattr(reg, which)
    assert_error(ctr("pull", TLS, ref), 125, message)
    assert_nothing_left(ctr)
    assert_error(ctr("run", "--rm", TLS, ref, "true"), 125, message)
    assert_nothing_left(ctr)
    assert not os.listdir(ctr.path("instances"))
    assert not os.path.exists(ctr.path("escaped")) and not os.path.exists(
        os.path.join(os.path.dirname(ctr.root), "escaped"))


def test_bad_references(ctr, reg):
    assert_error(ctr("pull", "UPPER/x"), 125, "invalid reference format", "lowercase")
    assert_error(ctr("pull", TLS, f"{reg.addr}/test/nosuch:v1"), 125, "pulling", "failed")
    assert_error(ctr("run", "--rm", "--pull", "sometimes", "x", "true"), 125, "--pull")
    assert_nothing_left(ctr)


def test_tag_rm_and_prune(ctr, reg):
    ctr("pull", TLS, reg.layered, check=True)
    r = ctr("image", "tag", reg.layered, "mine:v2")
    assert r.stdout == "docker.io/library/mine:v2\n", r.stderr
    ctr("image", "tag", "busybox", "bb2", check=True)
    ctr("image", "tag", "busybox", "bb3", check=True)
    r = ctr("run", "--rm", "--network", "none", "mine:v2", "cat", "/etc/l2")
    assert r.stdout == "two\n", r.stderr
    r = ctr("run", "--rm", "--network", "none", "bb2", "echo", "bb")
    assert r.stdout == "bb\n", r.stderr
    ctr("create", "--name", "user1", "--network", "none", reg.layered, "true", check=True)
    assert_error(ctr("image", "rm", reg.layered), 125, "used by", "user1")
    # the other name still has the layers: removing one name keeps them
    ctr("image", "rm", "-f", reg.layered, check=True)
    assert len(layer_dirs(ctr)) == 4  # 3 + busybox's, moved to the store by tag
    assert_error(ctr("start", "-a", "user1"), 125, "is gone")
    ctr("rm", "user1", check=True)
    ctr("image", "rm", "mine:v2", check=True)
    assert len(layer_dirs(ctr)) == 1
    r = ctr("image", "prune", "--format", "json")
    assert json.loads(r.stdout) == {"layers": [], "blobs": 0, "shifted": [], "reclaimed": 0}
    ctr("image", "rm", "busybox", "bb2", "bb3", check=True)
    assert layer_dirs(ctr) == [] and records(ctr) == {}


def test_prune_sweeps_what_a_killed_pull_left(ctr, reg):
    ctr("pull", TLS, reg.other, check=True)
    layer = layer_dirs(ctr)[0]
    junk = ctr.path("layers", "sha256", layer + ".tmp-abc123")
    os.makedirs(os.path.join(junk, "half"))
    stale = ctr.path("images", ".pull-999999999-x")
    os.makedirs(stale)
    ctr("image", "rm", reg.other, check=True)
    assert layer_dirs(ctr) == [] and not os.path.exists(junk) and not os.path.exists(stale)
    assert not os.listdir(ctr.path("blobs", "sha256"))


def test_userns_auto_on_a_pulled_image(ctr, reg, subids):
    ctr("pull", TLS, reg.layered, check=True)
    r = ctr("run", "--rm", "--userns", "auto", "--network", "none", reg.layered, "sh", "-c",
            "cat /etc/l2; ls /data; test -e /etc/gone || echo gone; id -u; "
            "echo w > /data/w && cat /data/w", env=subids)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["two", "c", "gone", "0", "w"]


def test_concurrent_first_runs_build_once(tmp_path, cgroup_parents_before):
    """On a fresh state root, 20 concurrent first runs of the recipe's image all succeed."""
    root = str(tmp_path / "root")
    ctr = Ctr(root)
    procs = [ctr.popen("run", "--rm", "--network", "none", "busybox", "echo", str(i))
             for i in range(20)]
    outs = [p.communicate(timeout=300) for p in procs]
    try:
        for i, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
            assert p.returncode == 0 and out == f"{i}\n", err
        assert list(records(ctr)) == ["busybox"]
        assert [e for e in os.listdir(ctr.path("images")) if e.startswith(".")] == []
    finally:
        left = leftovers(root)
        subprocess.run(["rm", "-rf", root])
        assert not left


def test_a_vm_of_a_pulled_image(ctr, reg, vm_kernels):
    """The VM kind boots the same layers (the host mounts their overlay, shared
    into the guest): one boot, several questions."""
    os.symlink(vm_kernels, ctr.path("kernels"))
    r = ctr("run", "--rm", "--vm", TLS, "--network", "none", reg.layered, "sh", "-c",
            "cat /etc/l2; ls /data; test -e /etc/gone || echo gone; ls /keep")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-5:] == ["two", "c", "gone", "k", "k2"]


def test_kill_9_during_a_pull_leaves_what_prune_removes(ctr, reg):
    import signal

    from helpers import wait_for

    p = ctr.popen("pull", TLS, reg.many)
    assert wait_for(lambda: len(layer_dirs(ctr)) >= 20, timeout=60)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert reg.many not in records(ctr)
    r = ctr("image", "prune", "--format", "json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["layers"]) >= 20, r.stderr
    assert_nothing_left(ctr)
    r = ctr("pull", TLS, reg.many)  # and the next pull finishes the job
    assert r.returncode == 0, r.stderr
    assert len(layer_dirs(ctr)) == 150


def test_progress_on_a_terminal(ctr, reg):
    from helpers import in_a_pty

    code, out = in_a_pty(ctr, "pull", TLS, reg.other)
    assert code == 0, out
    text = out.decode(errors="replace")
    assert "Getting image source signatures" in text and "layer 2/2" in text, text


def test_concurrent_first_runs_of_a_pulled_image_pull_once(ctr, reg):
    procs = [ctr.popen("run", "--rm", TLS, "--network", "none", reg.other) for _ in range(6)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out == "o\n", err
    assert sorted(records(ctr)) == sorted(["busybox", reg.other])
    assert len(layer_dirs(ctr)) == 2
