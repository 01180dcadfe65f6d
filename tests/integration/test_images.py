"""The image store: build, import, ls, rm, and first-use builds."""

import json
import os
import shutil
import subprocess
import tarfile

from test_errors import assert_error


def images(ctr):
    return {i["name"]: i for i in json.loads(ctr("image", "ls", "--format", "json").stdout)}


def test_first_use_builds_busybox(ctr):
    shutil.rmtree(ctr.path("images", "busybox"))
    assert "busybox" not in images(ctr)
    r = ctr("run", "--rm", "busybox", "echo", "built")
    assert r.stdout == "built\n"
    img = images(ctr)["busybox"]
    assert img["id"].startswith("sha256:") and img["size"] > 1_000_000
    assert os.path.isfile(os.path.join(img["rootfs"], "bin", "busybox"))
    # the recipe is deterministic: the same content gives the same id
    ctr("image", "rm", "busybox", check=True)
    ctr("image", "build", "busybox", check=True)
    assert images(ctr)["busybox"]["id"] == img["id"]


def test_build_refuses_unknown_recipe_and_existing_image(ctr):
    assert_error(ctr("image", "build", "nosuchrecipe"), 125, "no recipe for image nosuchrecipe")
    assert_error(ctr("image", "build", "busybox"), 125, "already exists")
    assert not [n for n in os.listdir(ctr.path("images")) if n.startswith(".")]


def test_import_a_rootfs_tarball(ctr, tmp_path):
    src = ctr.path("images", "busybox", "rootfs")
    tar = tmp_path / "rootfs.tar.gz"
    subprocess.run(["tar", "-C", src, "-czf", str(tar), "."], check=True)
    r = ctr("image", "import", str(tar), "mybox")
    assert r.returncode == 0 and r.stdout.startswith("mybox sha256:")
    r = ctr("run", "--rm", "mybox", "sh", "-c", "echo from-import; ls -ld /tmp")
    assert r.stdout.splitlines()[0] == "from-import"
    assert r.stdout.splitlines()[1].startswith("drwxrwxrwt")  # modes survive the import
    table = ctr("image", "ls").stdout
    assert "mybox" in table and "busybox" in table


def test_import_refuses_escaping_members_and_leaves_nothing(ctr, tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        info = tarfile.TarInfo("../../escaped")
        info.size = 0
        t.addfile(info)
    assert_error(ctr("image", "import", str(evil), "evil"), 125, "cannot import")
    assert "evil" not in images(ctr)
    assert not os.path.exists(tmp_path / "escaped")
    assert not [n for n in os.listdir(ctr.path("images")) if n.startswith(".")]
    assert_error(ctr("image", "import", str(tmp_path / "missing.tar"), "m"), 125, "no such file")
    (tmp_path / "junk.tar").write_text("not a tarball")
    assert_error(ctr("image", "import", str(tmp_path / "junk.tar"), "j"), 125, "cannot import")
    assert set(images(ctr)) == {"busybox"}


def test_rm_refused_while_used(ctr):
    ctr("create", "--name", "user1", "busybox", "true", check=True)
    assert_error(ctr("image", "rm", "busybox"), 125, "used by", "user1")
    ctr("rm", "user1", check=True)
    ctr("image", "rm", "busybox", check=True)
    assert images(ctr) == {}
    assert_error(ctr("image", "rm", "busybox"), 125, "no such image")
