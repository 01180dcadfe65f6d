"""An image's config supplies the run defaults (issue 15), as a user checks
them: the process's argv, environment, working directory and ids, the signal
`ctr stop` sends, -P's port answering from outside, an image volume seeded from
the image and kept across restarts, labels in `ctr inspect`. The images are the
session's busybox with an OCI config (or the flat keys) written into their
image.json, as a pulled image's record will carry it."""

import json
import os
import shutil
import subprocess

import pytest
from helpers import assert_refused, wait_for
from test_network import BUSYBOX, lab  # noqa: F401 - the network fixture

SCRIPT = ('tr "\\0" " " </proc/1/cmdline; echo; echo "cwd=$(pwd)"; echo "ids=$(id -u):$(id -g)";'
          ' env')


def make_image(ctr, name, config=None, files=None, **flat):
    """A copy of the busybox image as NAME, with `config` as its OCI config
    (or flat keys), and `files` ({path: text}) added to its root."""
    src, dst = ctr.path("images", "busybox"), ctr.path("images", name)
    subprocess.run(["cp", "-al", src, dst], check=True)
    for path, text in (files or {}).items():
        target = os.path.join(dst, "rootfs", path.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.unlink(target)  # hard-linked to the session's image: never write through
        with open(target, "w") as f:
            f.write(text)
    meta_path = os.path.join(dst, "image.json")
    with open(meta_path) as f:
        meta = json.load(f)
    os.unlink(meta_path)
    meta["name"] = name
    for key in ("cmd", "env", "workdir"):
        meta.pop(key, None)
    if config is not None:
        meta["config"] = config
    meta.update(flat)
    with open(meta_path, "w") as f:
        json.dump(meta, f)


def lines(text):
    return text.splitlines()


def test_entrypoint_cmd_env_workdir_and_user_from_the_config(ctr):
    make_image(ctr, "demo", {
        "Entrypoint": ["/bin/sh", "-c", SCRIPT], "Cmd": ["from-cmd"],
        "Env": ["GREETING=hello from the image", "PATH=/bin:/usr/bin"],
        "WorkingDir": "/srv/app", "User": "www-data",
    })
    r = ctr("run", "--rm", "demo")
    assert r.returncode == 0, r.stderr
    out = lines(r.stdout)
    assert out[0] == f"/bin/sh -c {SCRIPT} from-cmd "
    assert "cwd=/srv/app" in out and "ids=33:33" in out
    assert "GREETING=hello from the image" in out and "PATH=/bin:/usr/bin" in out
    # arguments replace Cmd; -e, -w and -u win
    r = ctr("run", "--rm", "-e", "GREETING=mine", "-w", "/tmp", "-u", "nobody", "demo", "arg")
    out = lines(r.stdout)
    assert out[0] == f"/bin/sh -c {SCRIPT} arg ", r.stderr
    assert "cwd=/tmp" in out and "ids=65534:65534" in out and "GREETING=mine" in out


def test_entrypoint_option_replaces_the_images_and_clears_cmd(ctr):
    make_image(ctr, "demo", {"Entrypoint": ["/bin/false"], "Cmd": ["never"]})
    r = ctr("run", "--rm", "--entrypoint", "/bin/cat", "demo", "/proc/1/cmdline")
    assert r.stdout == "/bin/cat\0/proc/1/cmdline\0", r.stderr
    r = ctr("run", "--rm", "--entrypoint", "", "demo", "echo", "cleared")
    assert r.stdout == "cleared\n", r.stderr
    r = ctr("run", "--rm", "--entrypoint", "/bin/echo", "demo")
    assert r.stdout == "\n", r.stderr  # the image's Cmd went with its Entrypoint


def test_a_flat_record_still_supplies_cmd_env_and_workdir(ctr):
    make_image(ctr, "flat", cmd=["/bin/sh", "-c", SCRIPT], env=["OLD=style"], workdir="/var")
    r = ctr("run", "--rm", "flat")
    assert r.returncode == 0, r.stderr
    assert "OLD=style" in lines(r.stdout) and "cwd=/var" in lines(r.stdout)


def test_stop_sends_the_images_stop_signal(ctr):
    make_image(ctr, "demo", {
        "Entrypoint": ["/bin/sh", "-c", 'trap "echo got-hup; exit 7" HUP; '
                       'echo ready; while :; do sleep 0.1; done'],
        "StopSignal": "SIGHUP",
    })
    ctr("run", "-d", "--name", "s", "demo", check=True)
    assert wait_for(lambda: "ready" in ctr("logs", "s").stdout)
    assert ctr.inspect("s")["spec"]["stop_signal"] == "SIGHUP"
    ctr("stop", "-t", "20", "s", check=True)
    state = ctr.state("s")
    assert state["exit_code"] == 7, state  # not 137: the trap ran, no SIGKILL was needed
    assert "got-hup" in ctr("logs", "s").stdout
    # --stop-signal wins over the image's
    ctr("run", "-d", "--name", "t", "--stop-signal", "KILL", "demo", check=True)
    assert ctr.inspect("t")["spec"]["stop_signal"] == "SIGKILL"


def test_an_image_volume_is_seeded_kept_and_removed_with_rm_v(ctr):
    make_image(ctr, "vol", {"Cmd": ["sleep", "1000"], "Volumes": {"/data": {}}},
               files={"/data/seed.txt": "from the image\n"})
    ctr("run", "-d", "--name", "v", "vol", check=True)
    vols = ctr.inspect("v")["spec"]["volumes"]
    assert len(vols) == 1 and vols[0]["anonymous"] and vols[0]["target"] == "/data"
    source = vols[0]["source"]
    assert source.startswith(ctr.path("volumes") + "/")
    r = ctr("exec", "v", "sh", "-c", "cat /data/seed.txt; echo kept > /data/new; "
            "grep ' /data ' /proc/mounts | wc -l")
    assert r.stdout == "from the image\n1\n", r.stderr
    assert open(os.path.join(source, "seed.txt")).read() == "from the image\n"
    # survives a restart (not seeded again), also after the image's file changed
    ctr("stop", "-t", "1", "v", check=True)
    ctr("start", "v", check=True)
    r = ctr("exec", "v", "cat", "/data/new", "/data/seed.txt")
    assert r.stdout == "kept\nfrom the image\n", r.stderr
    ctr("rm", "-f", "-v", "v", check=True)
    assert not os.path.exists(os.path.dirname(source))
    assert os.listdir(ctr.path("volumes")) == []


def test_rm_without_v_keeps_the_volume_and_rm_flag_removes_it(ctr):
    make_image(ctr, "vol", {"Cmd": ["true"], "Volumes": {"/data": {}}})
    ctr("run", "--name", "kept", "vol", check=True)
    source = ctr.inspect("kept")["spec"]["volumes"][0]["source"]
    ctr("rm", "kept", check=True)
    assert os.path.isdir(source)  # docker's rm keeps anonymous volumes
    shutil.rmtree(os.path.dirname(source))
    r = ctr("run", "--rm", "vol", "sh", "-c", "touch /data/x && ls /data")
    assert r.stdout == "x\n", r.stderr
    assert os.listdir(ctr.path("volumes")) == []  # --rm took its volume along
    # -v over the image's volume: no anonymous one
    host = ctr.path("host-data")
    os.makedirs(host)
    r = ctr("run", "--rm", "-v", f"{host}:/data", "vol", "touch", "/data/bound")
    assert r.returncode == 0 and os.path.exists(os.path.join(host, "bound")), r.stderr
    assert os.listdir(ctr.path("volumes")) == []


def test_a_volume_that_leads_out_of_the_root_stays_inside(ctr):
    """The image's /data is a symlink to the host's /etc: the copy is of the
    container's own /etc, and nothing on the host is touched."""
    make_image(ctr, "evil", {"Cmd": ["cat", "/data/hostname"], "Volumes": {"/data": {}}})
    os.symlink("../../../../../../etc", ctr.path("images", "evil", "rootfs", "data"))
    ctr("run", "--name", "e", "evil", check=True)
    source = ctr.inspect("e")["spec"]["volumes"][0]["source"]
    assert os.path.exists(os.path.join(source, "passwd"))
    with open(os.path.join(source, "passwd")) as f:
        assert "www-data:x:33" in f.read()  # the image's passwd, not the host's
    ctr("rm", "-v", "e", check=True)
    # one that leads to the container's /proc through a link: refused at start, nothing left
    make_image(ctr, "evil2", {"Cmd": ["true"], "Volumes": {"/data": {}}})
    os.symlink("/proc/self/../sys", ctr.path("images", "evil2", "rootfs", "data"))
    r = ctr("run", "--rm", "evil2")
    assert r.returncode == 125 and "leads to /proc/sys: refused" in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert os.listdir(ctr.path("volumes")) == [] and os.listdir(ctr.path("instances")) == []


def test_labels_from_the_image_and_the_options(ctr, tmp_path):
    make_image(ctr, "demo", {"Cmd": ["true"], "Labels": {"from": "image", "team": "img"}})
    f = tmp_path / "labels"
    f.write_text("team=file\n# no\nfile=1\n")
    ctr("create", "--name", "l", "-l", "team=cli", "--label", "flag", "--label-file", str(f),
        "demo", check=True)
    info = ctr.inspect("l")
    assert info["labels"] == {"from": "image", "team": "cli", "file": "1", "flag": ""}
    assert info["spec"]["labels"] == info["labels"]


@pytest.mark.parametrize("config, msg", [
    ({"Cmd": ["true"], "WorkingDir": "relative"}, "WorkingDir 'relative' is not an absolute"),
    ({"Cmd": ["true"], "Env": ["A=1\u0000B"]}, "Env contains a NUL byte"),
    ({"Cmd": ["true"], "ExposedPorts": {"http/tcp": {}}}, "ExposedPorts has 'http/tcp'"),
    ({"Cmd": ["true"], "Volumes": {"data": {}}}, "Volumes has 'data'"),
    ({"Cmd": ["true"], "Env": ["K=v"] * 5000}, "at most 1024"),
    ({"Cmd": "true"}, "Cmd is not a list of strings"),
])
def test_a_hostile_config_is_refused_and_leaves_nothing(ctr, config, msg):
    make_image(ctr, "evil", config)
    r = ctr("run", "--rm", "evil")
    assert_refused(ctr, r, msg)
    assert not os.path.exists(ctr.path("volumes")) or not os.listdir(ctr.path("volumes"))


def test_bad_label_and_entrypoint_input(ctr, tmp_path):
    make_image(ctr, "demo", {"Cmd": ["true"], "Volumes": {"/data": {}}})
    for args, msg in ((["-l", "=x"], "invalid --label '=x'"),
                      (["--label-file", str(tmp_path / "none")], "cannot read label file"),
                      (["--entrypoint", ""], "no command given")):
        assert_refused(ctr, ctr("run", *args, "demo"), msg)
    # the name in use: the volumes made for the second one go with it
    ctr("create", "--name", "dup", "demo", check=True)
    r = ctr("create", "--name", "dup", "demo")
    assert r.returncode == 125 and "already in use" in r.stderr
    assert len(os.listdir(ctr.path("volumes"))) == 1
    ctr("rm", "-v", "dup", check=True)
    assert os.listdir(ctr.path("volumes")) == []


def test_publish_all_answers_from_outside(ctr, lab):  # noqa: F811
    make_image(ctr, "web", {"Cmd": ["httpd", "-f", "-p", "80", "-h", "/etc"],
                            "ExposedPorts": {"80/tcp": {}, "53/udp": {}}})
    ctr("run", "-d", "--name", "w", "--hostname", "webhost", "-P", "web", check=True)
    info = ctr.inspect("w")
    ports = {(p["port"], p["proto"]): p["host_port"] for p in info["state"]["net"]["ports"]}
    assert set(ports) == {(80, "tcp"), (53, "udp")}
    assert all(32768 <= p < 65536 for p in ports.values()), ports
    r = lab.out(BUSYBOX, "wget", "-q", "-O", "-", f"http://192.0.2.1:{ports[80, 'tcp']}/hostname")
    assert r.stdout == "webhost\n", r.stderr
    # a second -P instance gets other ports; -p wins over -P for its port
    ctr("run", "-d", "--name", "w2", "-P", "-p", "8081:80", "web", check=True)
    other = {(p["port"], p["proto"]): p["host_port"]
             for p in ctr.state("w2")["net"]["ports"]}
    assert other[80, "tcp"] == 8081 and other[53, "udp"] != ports[53, "udp"]
    r = lab.out(BUSYBOX, "wget", "-q", "-O", "-", "http://192.0.2.1:8081/hostname")
    assert r.returncode == 0, r.stderr


def test_exec_runs_as_the_instances_user_unless_u(ctr):
    make_image(ctr, "demo", {"Cmd": ["sleep", "1000"], "User": "www-data",
                             "WorkingDir": "/var/www"})
    ctr("run", "-d", "--name", "x", "demo", check=True)
    assert ctr("exec", "x", "sh", "-c", "id -u; pwd").stdout == "33\n/var/www\n"
    assert ctr("exec", "-u", "root", "x", "id", "-u").stdout == "0\n"


def test_an_image_volume_of_a_userns_instance_belongs_to_its_ids(ctr, subids):  # noqa: F811
    make_image(ctr, "vol", {"Cmd": ["sleep", "1000"], "Volumes": {"/data": {}}},
               files={"/data/seed.txt": "seeded\n"})
    r = ctr("run", "-d", "--name", "u", "--userns", "auto", "--network", "none", "vol",
            env=subids)
    assert r.returncode == 0, r.stderr
    r = ctr("exec", "u", "sh", "-c", "cat /data/seed.txt; touch /data/new; ls -ln /data/new")
    assert r.stdout.splitlines()[0] == "seeded" and r.stdout.split()[3:5] == ["0", "0"], r
    source = ctr.inspect("u")["spec"]["volumes"][0]["source"]
    st = os.stat(os.path.join(source, "new"))
    assert (st.st_uid, st.st_gid) == (1500000000, 1500000000)  # the block's root on the host
    ctr("rm", "-f", "-v", "u", check=True)
    assert os.listdir(ctr.path("volumes")) == []
