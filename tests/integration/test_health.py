"""Healthchecks (issue 19): --health-* on run, an image's HEALTHCHECK, `ctr
healthcheck run`, and what a docker user reads: `ps` STATUS "(healthy)",
`inspect`'s .State.Health, `ps --filter health=`, health_status events."""

import json

from helpers import assert_refused, wait_for
from test_image_defaults import make_image


def _health(ctr, name):
    return json.loads(ctr("inspect", "-f", "{{json .State.Health}}", name, check=True).stdout)


def _ps(ctr, *args):
    return ctr("ps", *args, "--format", "{{.Names}} {{.Status}}", check=True).stdout


def test_a_passing_check_makes_it_healthy(ctr):
    ctr("run", "-d", "--name", "web", "--health-cmd", "echo fine; test -d /proc/1",
        "--health-interval", "1s", "busybox", "sleep", "100", check=True)
    assert "(health: starting)" in _ps(ctr)
    assert wait_for(lambda: "(healthy)" in _ps(ctr), timeout=30)
    assert _ps(ctr).startswith("web Up ")
    health = _health(ctr, "web")
    assert health["Status"] == "healthy" and health["FailingStreak"] == 0
    last = health["Log"][-1]
    assert last["ExitCode"] == 0 and last["Output"] == "fine\n"
    assert last["Start"] <= last["End"]
    assert ctr("ps", "-q", "--filter", "health=healthy", check=True).stdout.strip() \
        == ctr.inspect("web")["id"][:12]
    assert ctr("ps", "-q", "--filter", "health=unhealthy", check=True).stdout == ""
    config = json.loads(ctr("inspect", "-f", "{{json .Config.Healthcheck}}", "web",
                            check=True).stdout)
    assert config == {"Test": ["CMD-SHELL", "echo fine; test -d /proc/1"],
                      "Interval": 1_000_000_000}
    out = ctr("events", "--since", "1m", "--until", "0s", "--filter", "event=health_status",
              "--format", "{{.Action}} {{.Actor.Attributes.name}}", check=True).stdout
    assert out.splitlines() == ["health_status: healthy web"]


def test_failing_checks_make_it_unhealthy_after_the_retries(ctr):
    ctr("run", "-d", "--name", "sick", "--health-cmd", "echo no >&2; exit 1",
        "--health-interval", "1s", "--health-retries", "2", "busybox", "sleep", "100",
        check=True)
    assert wait_for(lambda: "(unhealthy)" in _ps(ctr), timeout=30)
    health = _health(ctr, "sick")
    assert health["Status"] == "unhealthy" and health["FailingStreak"] >= 2
    assert health["Log"][-1]["ExitCode"] == 1 and health["Log"][-1]["Output"] == "no\n"
    assert _ps(ctr, "--filter", "health=unhealthy").startswith("sick Up ")
    events = ctr("events", "--since", "1m", "--until", "0s", "-f", "event=health_status",
                 "--format", "{{.Action}}", check=True).stdout
    assert events.splitlines() == ["health_status: unhealthy"]


def test_healthcheck_run_by_hand_start_period_and_timeout(ctr):
    ctr("run", "-d", "--name", "app", "--health-cmd", "cat /tmp/ready",
        "--health-interval", "1h", "--health-retries", "1", "busybox", "sleep", "100",
        check=True)
    r = ctr("healthcheck", "run", "app")
    assert (r.returncode, r.stdout) == (1, "unhealthy\n")
    assert _health(ctr, "app")["Status"] == "unhealthy"
    ctr("exec", "app", "sh", "-c", "echo yes > /tmp/ready", check=True)
    r = ctr("healthcheck", "run", "app")
    assert (r.returncode, r.stdout) == (0, "healthy\n")
    health = _health(ctr, "app")
    assert health["Status"] == "healthy" and health["Log"][-1]["Output"] == "yes\n"
    assert [e["ExitCode"] for e in health["Log"]] == [1, 0]
    # within the start period failures do not count
    ctr("run", "-d", "--name", "slow", "--health-cmd", "false", "--health-start-period", "1h",
        "--health-retries", "1", "--health-interval", "1h", "busybox", "sleep", "100",
        check=True)
    for _ in range(2):
        assert ctr("healthcheck", "run", "slow").returncode == 1
    health = _health(ctr, "slow")
    assert health["Status"] == "starting" and health["FailingStreak"] == 0
    assert len(health["Log"]) == 2
    # a check longer than its timeout is killed and fails
    ctr("run", "-d", "--name", "hang", "--health-cmd", "sleep 30", "--health-timeout", "500ms",
        "--health-interval", "1h", "busybox", "sleep", "100", check=True)
    r = ctr("healthcheck", "run", "hang", timeout=15)
    assert r.returncode == 1
    last = _health(ctr, "hang")["Log"][-1]
    assert last["ExitCode"] == -1 and "exceeded timeout" in last["Output"]
    assert ctr("exec", "hang", "ps", check=True).stdout.count("sleep 30") == 0


def test_the_images_healthcheck_and_no_healthcheck(ctr):
    make_image(ctr, "checked", {"Cmd": ["sleep", "100"], "Healthcheck": {
        "Test": ["CMD", "test", "-e", "/etc/passwd"], "Interval": 1_000_000_000,
        "Retries": 2}})
    ctr("run", "-d", "--name", "img", "checked", check=True)
    assert wait_for(lambda: "(healthy)" in _ps(ctr), timeout=30)
    ctr("run", "-d", "--name", "off", "--no-healthcheck", "checked", check=True)
    assert "Health" not in ctr.inspect("off")["State"]
    assert json.loads(ctr("inspect", "-f", "{{json .Config.Healthcheck}}", "off",
                          check=True).stdout) == {"Test": ["NONE"]}
    assert ctr("ps", "--filter", "health=none", "--format", "{{.Names}}",
               check=True).stdout == "off\n"
    # the user's options replace the image's, one by one
    ctr("create", "--name", "mine", "--health-retries", "7", "checked", check=True)
    assert json.loads(ctr("inspect", "-f", "{{json .Config.Healthcheck}}", "mine",
                          check=True).stdout) == {
        "Test": ["CMD", "test", "-e", "/etc/passwd"], "Interval": 1_000_000_000,
        "Retries": 7}


def test_bad_healthcheck_input_is_refused(ctr):
    for args, message in (
            (("--health-cmd", "true", "--health-interval", "often"), "invalid --health-interval"),
            (("--health-cmd", "true", "--health-timeout", "1us"), "at least 1ms"),
            (("--health-cmd", "true", "--health-retries", "-1"), "retries"),
            (("--health-cmd", ""), "invalid --health-cmd"),
            (("--no-healthcheck", "--health-cmd", "true"), "--no-healthcheck conflicts")):
        assert_refused(ctr, ctr("run", "-d", *args, "busybox", "sleep", "1"), message)
    make_image(ctr, "hostile", {"Cmd": ["true"], "Healthcheck": {"Test": ["RUN", "x"]}})
    r = ctr("run", "--rm", "hostile")
    assert r.returncode == 125 and "Healthcheck" in r.stderr
    ctr("run", "-d", "--name", "plain", "busybox", "sleep", "100", check=True)
    r = ctr("healthcheck", "run", "plain")
    assert r.returncode == 125 and "has no healthcheck" in r.stderr
    ctr("create", "--name", "idle", "--health-cmd", "true", "busybox", check=True)
    r = ctr("healthcheck", "run", "idle")
    assert r.returncode == 125 and "not running" in r.stderr
    r = ctr("healthcheck", "run", "ghost")
    assert r.returncode == 125 and "no such instance" in r.stderr
