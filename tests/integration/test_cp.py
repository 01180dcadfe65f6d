"""`ctr cp` (issue 19): files and folders between an instance and the host, both
ways, `-` as a tar stream, running and stopped instances, owners and modes as
docker keeps them, and paths resolved inside the instance's root: a symlink there
that points to / or up and out never reaches the host's files, for reading or
writing."""

import io
import os
import subprocess
import tarfile

import pytest
from helpers import CTR

NONE = ("--network", "none")


def raw(ctr, *args, data=None):
    """ctr with bytes in and out (a tar stream)."""
    return subprocess.run([*ctr.prefix, CTR, *args], input=data, capture_output=True,
                          env=ctr.env(), timeout=60)


def one_line_error(r, message, code=125):
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    assert r.returncode == code, err
    assert err.startswith("ctr: error: ") and message in err, err
    assert len(err.splitlines()) == 1, err


def sh(ctr, name, script):
    r = ctr("exec", name, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def web(ctr):
    ctr("run", "-d", "--name", "web", *NONE, "busybox", "sleep", "1000", check=True)
    ctr("exec", "web", "mkdir", "/srv", check=True)
    return "web"


@pytest.fixture
def host(tmp_path):
    """A host folder with a file (1234:5678, 0640) and a tree in it."""
    top = tmp_path / "host"
    (top / "tree" / "sub").mkdir(parents=True)
    (top / "file.txt").write_text("a file\n")
    os.chown(top / "file.txt", 1234, 5678)
    os.chmod(top / "file.txt", 0o640)
    (top / "tree" / "a").write_text("A\n")
    (top / "tree" / "sub" / "b").write_text("B\n")
    os.symlink("a", top / "tree" / "link")
    os.chmod(top / "tree" / "sub", 0o710)
    return top


def test_host_to_a_running_instance_files_and_folders(ctr, web, host):
    ctr("cp", str(host / "file.txt"), "web:/tmp/", check=True)  # into a folder
    ctr("cp", str(host / "file.txt"), "web:/tmp/renamed.txt", check=True)  # a new name
    ctr("cp", str(host / "tree"), "web:/srv", check=True)  # a new folder named /srv/tree
    ctr("cp", str(host / "tree"), "web:/var/new", check=True)  # a missing one: made as named
    ctr("cp", f"{host / 'tree'}/.", "web:/home", check=True)  # its content only
    out = sh(ctr, "web", "cat /tmp/file.txt /tmp/renamed.txt; "
             "stat -c '%n %u:%g %a' /tmp/file.txt /srv/tree/sub /var/new/sub/b /home/a; "
             "readlink /srv/tree/link; cat /srv/tree/sub/b /var/new/a")
    assert out.splitlines() == [
        "a file", "a file",
        "/tmp/file.txt 0:0 640",  # the instance's root owns it (docker's default), mode kept
        "/srv/tree/sub 0:0 710", "/var/new/sub/b 0:0 644", "/home/a 0:0 644",
        "a", "B", "A"]
    # -a keeps the owners
    ctr("cp", "-a", str(host / "file.txt"), "web:/tmp/kept.txt", check=True)
    assert sh(ctr, "web", "stat -c '%u:%g %a' /tmp/kept.txt") == "1234:5678 640\n"
    # over an existing file
    (host / "file.txt").write_text("second\n")
    ctr("cp", str(host / "file.txt"), "web:/tmp/file.txt", check=True)
    assert sh(ctr, "web", "cat /tmp/file.txt") == "second\n"


def test_a_running_instance_to_the_host(ctr, web, tmp_path):
    sh(ctr, "web", "mkdir -p /data/sub; echo one > /data/one; echo two > /data/sub/two; "
       "chown 42:43 /data/one; chmod 604 /data/one; ln -s /etc/shadow /data/shadow; "
       "chmod 4755 /data/sub/two")
    out = tmp_path / "out"
    out.mkdir()
    ctr("cp", "web:/data", str(out), check=True)  # into an existing folder
    ctr("cp", "web:/data", str(out / "copy"), check=True)  # a new one, named so
    ctr("cp", "web:/data/one", str(out / "one.txt"), check=True)
    ctr("cp", "-a", "web:/data/one", str(out / "kept.txt"), check=True)
    assert (out / "data" / "one").read_text() == "one\n"
    assert (out / "copy" / "sub" / "two").read_text() == "two\n"
    st = os.stat(out / "one.txt")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o604)  # the caller's
    st = os.stat(out / "kept.txt")
    assert (st.st_uid, st.st_gid) == (42, 43)
    # a link is copied as a link: the host's /etc/shadow is not read
    assert os.readlink(out / "data" / "shadow") == "/etc/shadow"
    # no setuid program on the host out of an instance's files
    assert os.stat(out / "data" / "sub" / "two").st_mode & 0o7777 == 0o755


def test_tar_streams_both_ways(ctr, web, host):
    r = subprocess.run(["tar", "-C", str(host), "-c", "tree", "file.txt"],
                       capture_output=True, check=True)
    cp = raw(ctr, "cp", "-", "web:/srv", data=r.stdout)
    assert cp.returncode == 0, cp.stderr
    # the instance's root owns what came in, unless -a keeps the archive's owners
    assert sh(ctr, "web", "cat /srv/tree/sub/b; stat -c '%u:%g' /srv/file.txt") == (
        "B\n0:0\n")
    cp = raw(ctr, "cp", "-a", "-", "web:/tmp", data=r.stdout)
    assert cp.returncode == 0, cp.stderr
    assert sh(ctr, "web", "stat -c '%u:%g' /tmp/file.txt") == "1234:5678\n"
    out = raw(ctr, "cp", "web:/srv/tree", "-")
    assert out.returncode == 0, out.stderr
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        names = sorted(tar.getnames())
        assert names == ["tree", "tree/a", "tree/link", "tree/sub", "tree/sub/b"]
        assert tar.extractfile("tree/sub/b").read() == b"B\n"
        assert tar.getmember("tree/link").issym()
    # a stream that is not a tar: one line
    cp = raw(ctr, "cp", "-", "web:/srv", data=b"not a tar archive at all" * 100)
    one_line_error(cp, "not a tar archive")


def test_a_stopped_and_a_created_instance(ctr, host, tmp_path):
    ctr("create", "--name", "later", *NONE, "busybox", "cat", "/etc/motd", check=True)
    ctr("cp", str(host / "file.txt"), "later:/etc/motd", check=True)
    r = ctr("start", "-a", "later")
    assert r.stdout == "a file\n", r.stderr
    # stopped now: out, and in again, with its volume
    ctr("run", "--name", "done", *NONE, "-v", "vol:/data", "busybox", "sh", "-c",
        "echo in-volume > /data/v; echo in-root > /r", check=True)
    out = tmp_path / "out"
    out.mkdir()
    ctr("cp", "done:/data/v", str(out), check=True)
    ctr("cp", "done:/r", str(out), check=True)
    assert (out / "v").read_text() == "in-volume\n" and (out / "r").read_text() == "in-root\n"
    ctr("cp", str(host / "tree"), "done:/data/", check=True)
    assert os.path.isfile(ctr.path("volumes", "vol", "_data", "tree", "a"))  # in its volume
    ctr("cp", str(host / "tree"), "done:/", check=True)
    r = ctr("start", "-a", "done")
    assert r.returncode == 0
    assert ctr("run", "--rm", *NONE, "-v", "vol:/data", "busybox", "cat", "/data/tree/a",
               check=True).stdout == "A\n"
    # the stopped instance's root was mounted in a namespace of the copy's own: nothing stays
    with open("/proc/self/mounts") as f:
        assert ctr.root not in f.read()
    ctr("rm", "done", "later", check=True)
    ctr("volume", "rm", "vol", check=True)


@pytest.fixture
def outside(tmp_path):
    """Where a symlink that leaves the instance's root would lead on the host."""
    top = tmp_path / "outside"
    top.mkdir()
    (top / "secret").write_text("the host's secret\n")
    return top


def test_symlinks_in_the_instance_never_lead_out_of_its_root(ctr, web, host, outside, tmp_path):
    sh(ctr, "web", f"ln -s / /slash; ln -s ../../../../../../../../.. /up; "
       f"ln -s {outside} /abs; ln -s {outside}/secret /abs-secret; mkdir -p /etc/d; "
       f"ln -s ../../../../../../../../..{outside} /etc/d/rel")
    out = tmp_path / "out"
    out.mkdir()
    # reading: every one of these names the host's secret, were it followed out
    for src in (f"/up{outside}/secret", f"/slash{outside}/secret", "/abs/secret",
                "/etc/d/rel/secret"):
        one_line_error(ctr("cp", f"web:{src}", str(out)), "could not find the file")
    one_line_error(ctr("cp", "-L", "web:/abs-secret", str(out)), "could not find the file")
    assert os.listdir(out) == []
    # writing: each lands inside the instance, never in the host's folder
    for i, dst in enumerate((f"/up{outside}", f"/slash{outside}", "/abs", "/etc/d/rel")):
        sh(ctr, "web", f"mkdir -p {outside}")  # the instance's own folder of that name
        ctr("cp", str(host / "file.txt"), f"web:{dst}/w{i}", check=True)
    assert sorted(os.listdir(outside)) == ["secret"]
    assert sh(ctr, "web", f"ls {outside}").split() == ["w0", "w1", "w2", "w3"]
    # a link as the destination file is replaced, not written through
    sh(ctr, "web", f"ln -s {outside}/secret /etc/target")
    ctr("cp", str(host / "file.txt"), "web:/etc/target", check=True)
    assert (outside / "secret").read_text() == "the host's secret\n"
    assert sh(ctr, "web", "cat /etc/target; test -L /etc/target || echo file") == (
        "a file\nfile\n")
    # the same for a stopped instance (its overlay mounted for the copy)
    ctr("stop", "-t", "0", "web", check=True)
    one_line_error(ctr("cp", f"web:/up{outside}/secret", str(out)), "could not find the file")
    ctr("cp", str(host / "file.txt"), f"web:/up{outside}/stopped", check=True)
    assert sorted(os.listdir(outside)) == ["secret"]


def test_a_hostile_tar_stream_stays_inside(ctr, web, outside):
    def tar_of(*members):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, kind, arg in members:
                ti = tarfile.TarInfo(name)
                if kind == "sym":
                    ti.type, ti.linkname = tarfile.SYMTYPE, arg
                    tar.addfile(ti)
                else:
                    ti.size = len(arg)
                    tar.addfile(ti, io.BytesIO(arg))
        return buf.getvalue()

    def cp_in(data):
        p = raw(ctr, "cp", "-", "web:/srv", data=data)
        return p.returncode, p.stderr.decode()

    code, err = cp_in(tar_of((f"../../../../../../..{outside}/dotdot", "file", b"x")))
    assert code == 125 and "leads out of the destination" in err, err
    code, err = cp_in(tar_of(("esc", "sym", str(outside)), ("esc/through", "file", b"x")))
    assert code == 125 and "a symlink is never followed" in err, err
    code, err = cp_in(tar_of(("up", "sym", "../../../../../.."),
                             ("up/" + str(outside).lstrip("/") + "/up", "file", b"x")))
    assert code == 125, err
    code, err = cp_in(tar_of((str(outside) + "/abs", "file", b"x")))  # absolute: made relative
    assert code == 0, err
    assert sorted(os.listdir(outside)) == ["secret"]
    assert sh(ctr, "web", f"cat /srv{outside}/abs") == "x"


def test_proc_and_sys_of_a_running_instance_are_not_written(ctr, web, host):
    r = ctr("cp", str(host / "file.txt"), "web:/proc/sys/kernel/hostname")
    one_line_error(r, "the kernel's")
    r = ctr("cp", str(host / "file.txt"), "web:/sys/x")
    one_line_error(r, "the kernel's")


def test_missing_paths_and_bad_arguments(ctr, web, host, tmp_path):
    one_line_error(ctr("cp", "web:/no/such", str(tmp_path)), "could not find the file")
    one_line_error(ctr("cp", str(tmp_path / "nope"), "web:/tmp"), "could not find the file")
    one_line_error(ctr("cp", str(host / "file.txt"), "web:/no/such/dir/"),
                   "does not exist")
    one_line_error(ctr("cp", str(host / "file.txt"), "web:/no/such/x"), "does not exist")
    one_line_error(ctr("cp", "web:/etc", str(tmp_path / "no" / "where")), "does not exist")
    one_line_error(ctr("cp", str(host / "tree"), "web:/etc/passwd"),
                   "cannot copy a directory to a file")
    one_line_error(ctr("cp", "nosuch:/etc", str(tmp_path)), "no such instance: nosuch")
    one_line_error(ctr("cp", str(tmp_path), str(tmp_path)), "at least one instance")
    one_line_error(ctr("cp", "web:/a", "web:/b"), "between instances is not supported")
    one_line_error(ctr("cp", "web:", str(tmp_path)), "a path in the instance is needed")
    assert not os.path.exists(tmp_path / "no") and not os.path.exists(tmp_path / "such")
    assert sh(ctr, "web", "ls -d /no 2>&1 || true") != "/no\n"  # nothing made inside either


def test_a_userns_instance_gets_files_of_its_own_root(ctr, host, subids):
    r = ctr("run", "-d", "--name", "u", *NONE, "--userns", "auto", "busybox", "sleep", "1000",
            env=subids)
    assert r.returncode == 0, r.stderr
    ctr("cp", str(host / "tree"), "u:/tmp", check=True)
    assert sh(ctr, "u", "stat -c '%u:%g' /tmp/tree /tmp/tree/a; cat /tmp/tree/a") == (
        "0:0\n0:0\nA\n")
    sh(ctr, "u", "echo mine > /tmp/m; chown 7:8 /tmp/m")
    out = host / "out"
    out.mkdir()
    ctr("cp", "-a", "u:/tmp/m", str(out), check=True)
    st = os.stat(out / "m")
    assert (st.st_uid, st.st_gid) == (7, 8)  # the instance's ids, not the host's shifted ones
