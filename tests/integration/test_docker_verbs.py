"""The verbs docker users type by habit (issue 19, first slice): ps, inspect -f
with docker's field names, wait, restart, top, port, version, info. Real
containers; each test asserts what a docker user would check."""

import json
import os

from helpers import wait_for


def _refused(r, message):
    assert r.returncode == 125, r.stderr
    assert r.stderr.startswith("ctr: error: ") and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def _cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[:-1]


def test_ps_shows_dockers_columns_and_ids(ctr):
    ctr("run", "-d", "--name", "web", "busybox", "sleep", "100", check=True)
    ctr("run", "--name", "done", "busybox", "sh", "-c", "exit 3")
    lines = ctr("ps", check=True).stdout.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    assert len(lines) == 2 and lines[1].split()[-1] == "web" and " Up " in lines[1]
    full_id = ctr.inspect("web")["id"]
    assert lines[1].split()[0] == full_id[:12]
    everything = ctr("ps", "-a", check=True).stdout
    assert "Exited (3)" in everything and "done" in everything
    assert ctr("ps", "-q", check=True).stdout.split() == [full_id[:12]]
    assert full_id in ctr("ps", "--no-trunc", check=True).stdout


def test_ps_filters_and_formats(ctr):
    ctr("run", "-d", "--name", "web", "busybox", "sleep", "100", check=True)
    ctr("run", "--name", "done", "busybox", "sh", "-c", "exit 3")
    fmt = ("--format", "{{.Names}} {{.State}}")
    assert ctr("ps", "-a", *fmt, check=True).stdout.splitlines() == ["done exited",
                                                                      "web running"]
    assert ctr("ps", "--filter", "status=exited", *fmt, check=True).stdout == "done exited\n"
    assert ctr("ps", "-a", "--filter", "name=we", *fmt, check=True).stdout == "web running\n"
    assert ctr("ps", "-a", "-f", "ancestor=busybox", "-f", "name=done", *fmt,
               check=True).stdout == "done exited\n"
    assert ctr("ps", "-a", "--filter", "ancestor=debian", "-q", check=True).stdout == ""
    rows = [json.loads(line) for line in
            ctr("ps", "-a", "--format", "json", check=True).stdout.splitlines()]
    assert {r["Names"]: r["State"] for r in rows} == {"web": "running", "done": "exited"}
    table = ctr("ps", "--format", "table {{.Names}}\\t{{.Image}}", check=True).stdout
    assert [line.split() for line in table.splitlines()] == [["NAMES", "IMAGE"],
                                                             ["web", "busybox"]]
    _refused(ctr("ps", "--filter", "colour=red"), "invalid --filter")
    _refused(ctr("ps", "--format", "{{if .Names}}"), "template")


def test_inspect_format_reads_dockers_fields(ctr):
    ctr("run", "-d", "--name", "web", "-m", "64m", "-e", "FOO=bar", "busybox",
        "sleep", "100", check=True)
    out = ctr("inspect", "-f", "{{.State.Pid}} {{.State.Running}} {{.State.Status}} "
              "{{.HostConfig.Memory}} {{.Name}}", "web", check=True).stdout.split()
    pid = int(out[0])
    assert _cmdline(pid) == [b"sleep", b"100"]  # the real process, on the host
    assert out[1:] == ["true", "running", str(64 << 20), "/web"]
    env = json.loads(ctr("inspect", "--format", "{{json .Config.Env}}", "web",
                         check=True).stdout)
    assert "FOO=bar" in env
    doc = ctr.inspect("web")  # ctr's own fields stay beside docker's
    assert doc["state"]["pid"] == pid and doc["State"]["Pid"] == pid
    ctr("stop", "-t", "0", "web", check=True)
    assert ctr("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}",
               "web", check=True).stdout.split() == ["exited", "137", "false"]
    _refused(ctr("inspect", "-f", "{{range .Mounts}}", "web"), "template")


def test_wait_prints_the_exit_status(ctr):
    ctr("run", "--name", "done", "busybox", "sh", "-c", "exit 3")
    assert ctr("wait", "done", check=True).stdout == "3\n"
    ctr("run", "-d", "--name", "later", "busybox", "sh", "-c", "sleep 1; exit 7", check=True)
    assert ctr("wait", "later", check=True).stdout == "7\n"
    ctr("run", "-d", "--name", "stopped", "busybox", "sleep", "100", check=True)
    waiter = ctr.popen("wait", "stopped")
    ctr("stop", "-t", "1", "stopped", check=True)
    out, _ = waiter.communicate(timeout=30)
    assert out == "137\n"  # sleep as PID 1 ignores SIGTERM: killed after the timeout


def test_restart_runs_it_again(ctr):
    ctr("run", "-d", "--name", "web", "busybox", "sleep", "100", check=True)
    before = ctr.state("web")["pid"]
    assert ctr("restart", "-t", "1", "web", check=True).stdout == "web\n"
    state = ctr.state("web")
    assert state["status"] == "running" and state["pid"] != before
    assert _cmdline(state["pid"]) == [b"sleep", b"100"]
    ctr("run", "-d", "--rm", "--name", "gone", "busybox", "sleep", "100", check=True)
    _refused(ctr("restart", "gone"), "--rm")
    ctr("rm", "-f", "gone", check=True)


def test_top_lists_only_the_instances_processes(ctr):
    ctr("run", "-d", "--name", "web", "busybox", "sh", "-c", "sleep 100 & sleep 200",
        check=True)
    pid = ctr.state("web")["pid"]
    assert wait_for(lambda: "sleep 100" in ctr("top", "web").stdout)
    out = ctr("top", "web", check=True).stdout.splitlines()
    assert out[0].split()[:3] == ["UID", "PID", "PPID"]
    pids = {int(line.split()[1]) for line in out[1:]}
    # sh execs its last command: the two sleeps, nothing of the host's
    assert pid in pids and os.getpid() not in pids and len(pids) == 2
    out = ctr("top", "web", "-o", "pid,comm", check=True).stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"] and len(out) == 3
    ctr("stop", "-t", "0", "web", check=True)
    r = ctr("top", "web")
    assert r.returncode == 125 and "not running" in r.stderr


def test_port_lists_the_published_ports(ctr):
    ctr("run", "-d", "--name", "web", "-p", "8080:80", "-p", "127.0.0.1:5353:53/udp",
        "busybox", "sleep", "100", check=True)
    assert ctr("port", "web", check=True).stdout.splitlines() == [
        "80/tcp -> 0.0.0.0:8080", "53/udp -> 127.0.0.1:5353"]
    assert ctr("port", "web", "53/udp", check=True).stdout == "127.0.0.1:5353\n"
    _refused(ctr("port", "web", "81"), "no public port")


def test_version_and_info(ctr):
    version = json.loads(ctr("version", "--format", "json", check=True).stdout)
    assert version["Kernel"] == os.uname().release and version["Version"]
    ctr("run", "-d", "--name", "web", "busybox", "sleep", "100", check=True)
    info = json.loads(ctr("info", "--format", "json", check=True).stdout)
    assert info["InstancesByStatus"]["running"] == 1 and info["Images"] == 1
    assert info["Kernel"] == os.uname().release and info["StateRoot"] == ctr.root
    assert info["CgroupVersion"] in ("1", "2")


def test_diff_lists_added_changed_and_deleted_paths(ctr):
    ctr("run", "--name", "job", "busybox", "sh", "-c",
        "echo hi > /new; echo x >> /etc/passwd; rm /etc/group; mkdir -p /srv/a", check=True)
    out = ctr("diff", "job", check=True).stdout.splitlines()
    assert "A /new" in out and "C /etc/passwd" in out and "D /etc/group" in out
    assert "C /etc" in out and "A /srv/a" in out
    assert out == sorted(out, key=lambda line: line[2:])


def test_bash_completes_instance_image_and_verb_names(ctr):
    import subprocess

    from helpers import CTR

    ctr("create", "--name", "web1", "busybox", "true", check=True)
    script = ctr("completion", "bash", check=True).stdout

    def complete(*words):
        line = " ".join(words)
        r = subprocess.run(
            ["bash", "-c", f'{script}\nCOMP_WORDS=({line} ""); COMP_CWORD={len(words)}; '
             f'_ctr_completion {CTR}; printf "%s\\n" "${{COMPREPLY[@]}}"'],
            capture_output=True, text=True, env=ctr.env(), check=True)
        return r.stdout.split()

    assert complete("ctr", "rm") == ["web1"]
    assert complete("ctr", "run") == ["busybox"]
    assert complete("ctr", "image", "rm") == ["busybox"]
    r = ctr("completion", "tcsh")
    assert r.returncode == 125 and "tcsh" in r.stderr


def test_image_inspect(ctr):
    listed = json.loads(ctr("image", "ls", "--format", "json", check=True).stdout)[0]
    docs = json.loads(ctr("image", "inspect", "busybox", check=True).stdout)
    assert len(docs) == 1 and docs[0]["Id"] == listed["id"]
    assert docs[0]["RootFS"]["Layers"] == listed["layers"] and docs[0]["RepoTags"] == ["busybox"]
    assert docs[0]["Size"] == listed["size"] > 0
    out = ctr("image", "inspect", "-f", "{{.Id}} {{json .Config.Cmd}} {{.Os}}", "busybox",
              check=True).stdout.split()
    assert out[0] == listed["id"] and json.loads(out[1]) == listed["cmd"] and out[2] == "linux"
    _refused(ctr("image", "inspect", "nosuch"), "no such image")


def test_system_df_and_prune(ctr):
    ctr("run", "-d", "--name", "web", "busybox", "sleep", "100", check=True)
    ctr("run", "--name", "done", "busybox", "sh", "-c", "head -c 300000 /dev/zero > /big")
    ctr("network", "create", "spare", check=True)
    rows = {r["type"]: r for r in json.loads(ctr("system", "df", "--format", "json",
                                                  check=True).stdout)}
    assert rows["Images"]["total"] == 1 and rows["Images"]["active"] == 1
    assert rows["Instances"]["total"] == 2 and rows["Instances"]["active"] == 1
    assert rows["Instances"]["reclaimable"] >= 300000  # the stopped one's upper
    r = ctr("system", "prune", input="n\n")
    assert r.returncode != 0 and "Are you sure" in r.stderr  # asked, and refused: nothing gone
    assert ctr("inspect", "done").returncode == 0
    out = ctr("system", "prune", "-f", check=True).stdout
    assert "deleted instance: done" in out and "deleted network: spare" in out
    assert ctr("inspect", "done").returncode != 0
    assert ctr.state("web")["status"] == "running"  # a running one stays
    assert "spare" not in ctr("network", "ls", check=True).stdout
    images = json.loads(ctr("image", "ls", "--format", "json", check=True).stdout)
    assert [i["name"] for i in images] == ["busybox"]  # without -a, images stay


def test_verbs_take_an_id_or_its_start(ctr):
    """docker's habit: `ctr stop $(ctr ps -q)`, `ctr rm $(ctr ps -aq --no-trunc)`."""
    ctr("run", "-d", "--name", "web", "--network", "none", "busybox", "sleep", "100",
        check=True)
    short = ctr("ps", "-q", check=True).stdout.split()
    assert len(short) == 1 and len(short[0]) == 12
    assert ctr("inspect", "-f", "{{.Name}}", short[0][:5], check=True).stdout == "/web\n"
    ctr("stop", "-t", "0", *short, check=True)
    assert ctr.state("web")["status"] == "stopped"
    ctr("create", "--name", "other", "--network", "none", "busybox", "true", check=True)
    ids = ctr("ps", "-aq", "--no-trunc", check=True).stdout.split()
    assert len(ids) == 2 and all(len(i) == 64 for i in ids)
    common = os.path.commonprefix(ids)
    if common:  # two ids that start alike: that start names neither
        _refused(ctr("rm", common), "give more of it")
    _refused(ctr("rm", "0" * 64 if "0" * 64 not in ids else "f" * 64), "no such instance")
    ctr("rm", *ids, check=True)
    assert ctr("ps", "-aq", check=True).stdout == ""
