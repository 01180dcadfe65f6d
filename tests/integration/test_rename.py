"""`ctr rename OLD NEW` (issue 19): the instance answers to its new name, running
or stopped: in ps and inspect, for its monitor (stop, logs, exit status,
healthchecks), and in the /etc/hosts of its network's peers; the old name is
gone, and the event log has docker's `rename`."""

import json
import os

from helpers import wait_for
from test_network import lab  # noqa: F401 - the network fixture

NONE = ("--network", "none")


def one_line_error(r, message, code=125):
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith("ctr: error: ") and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def names(ctr):
    return ctr("ps", "-a", "--format", "{{.Names}}", check=True).stdout.split()


def test_a_running_instance_is_reached_by_its_new_name(ctr, lab):  # noqa: F811
    ctr("run", "-d", "--name", "web", "busybox", "httpd", "-f", "-p", "80", "-h", "/etc",
        check=True)
    ctr("run", "-d", "--name", "peer", "busybox", "sleep", "1000", check=True)
    ip = ctr.state("web")["net"]["ip"]
    assert f"{ip}\tweb" in ctr("exec", "peer", "cat", "/etc/hosts", check=True).stdout
    ctr("rename", "web", "site", check=True)
    hosts = ctr("exec", "peer", "cat", "/etc/hosts", check=True).stdout
    assert f"{ip}\tsite" in hosts and "web" not in hosts
    own = ctr("exec", "site", "cat", "/etc/hosts", check=True).stdout
    assert any(line.startswith(f"{ip}\t") and "site" in line.split()
               for line in own.splitlines()) and "web" not in own
    r = ctr("exec", "peer", "sh", "-c",
            "printf 'GET /hostname HTTP/1.0\\r\\n\\r\\n' | nc -w 5 site 80")
    assert r.returncode == 0 and r.stdout.startswith("HTTP/1."), r.stderr
    assert sorted(names(ctr)) == ["peer", "site"]
    one_line_error(ctr("inspect", "web"), "no such instance: web")
    doc = ctr.inspect("site")
    assert doc["Name"] == "/site" and doc["State"]["Running"]
    # a peer started later learns the new name too
    r = ctr("run", "--rm", "busybox", "grep", "site", "/etc/hosts")
    assert r.stdout.startswith(ip), r.stderr
    # its monitor follows: stop records the exit under the new name, logs still work
    ctr("stop", "-t", "1", "site", check=True)
    state = ctr.state("site")
    assert state["status"] == "stopped" and state["exit_code"] is not None
    assert ctr("logs", "site").returncode == 0
    ctr("start", "site", check=True)
    assert ctr.state("site")["status"] == "running"
    ident = ctr.inspect("site")["id"]
    assert open(ctr.path("renames", ident)).read() == "site\n"
    ctr("rm", "-f", "site", check=True)
    assert not os.path.exists(ctr.path("renames", ident))  # gone with the instance


def test_a_stopped_instance_and_the_events(ctr):
    ctr("run", "--name", "job", *NONE, "busybox", "sh", "-c", "echo hi > /f", check=True)
    ident = ctr.inspect("job")["id"]
    ctr("rename", "job", "task", check=True)
    assert names(ctr) == ["task"]
    r = ctr("start", "-a", "task")
    assert r.returncode == 0, r.stderr
    assert ctr("cp", "task:/f", "-").returncode == 0  # its root (upper) came along
    assert ctr.inspect("task")["id"] == ident
    r = ctr("events", "--since", "1h", "--until", "0s", "--filter", "event=rename",
            "--format", "json", check=True)
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(events) == 1
    assert events[0]["Actor"]["ID"] == ident
    assert events[0]["Actor"]["Attributes"]["name"] == "task"
    assert events[0]["Actor"]["Attributes"]["oldName"] == "/job"


def test_rename_refused(ctr):
    ctr("create", "--name", "a", *NONE, "busybox", "true", check=True)
    ctr("run", "-d", "--name", "b", *NONE, "busybox", "sleep", "100", check=True)
    one_line_error(ctr("rename", "a", "b"), "already in use")
    one_line_error(ctr("rename", "b", "a"), "already in use")
    one_line_error(ctr("rename", "a", "a"), "already the name")
    one_line_error(ctr("rename", "nosuch", "c"), "no such instance: nosuch")
    one_line_error(ctr("rename", "a", "bad/name"), "invalid")
    one_line_error(ctr("rename", "a", ".hidden"), "invalid")
    assert sorted(names(ctr)) == ["a", "b"]
    assert ctr.state("b")["status"] == "running"
    assert sorted(os.listdir(ctr.path("instances"))) == ["a", "b"]
    assert not os.path.exists(ctr.path("renames"))  # refused before anything was noted


def test_the_old_name_can_be_taken_again_while_the_renamed_one_runs(ctr):
    """The renamed instance's monitor must record its exit on its own record,
    never on the new instance that took its old name."""
    ctr("run", "-d", "--name", "svc", *NONE, "busybox", "sh", "-c", "sleep 2; exit 3",
        check=True)
    ctr("rename", "svc", "old-svc", check=True)
    ctr("create", "--name", "svc", *NONE, "busybox", "true", check=True)
    assert wait_for(lambda: ctr.state("old-svc")["status"] == "stopped", timeout=30)
    assert ctr.state("old-svc")["exit_code"] == 3
    assert ctr.state("svc")["status"] == "created"
    assert ctr("start", "-a", "svc").returncode == 0


def test_healthchecks_follow_the_new_name(ctr):
    ctr("run", "-d", "--name", "h", *NONE, "--health-cmd", "test -e /ok",
        "--health-interval", "300ms", "--health-retries", "1", "busybox", "sleep", "1000",
        check=True)
    ctr("rename", "h", "h2", check=True)
    ctr("exec", "h2", "touch", "/ok", check=True)

    def status():
        return ctr("inspect", "-f", "{{.State.Health.Status}}", "h2").stdout.strip()

    assert wait_for(lambda: status() == "healthy", timeout=30), status()
    ctr("exec", "h2", "rm", "/ok", check=True)
    assert wait_for(lambda: status() == "unhealthy", timeout=30), status()
