"""ctr events (issue 19): what a docker user watching `docker events` sees, with
real containers: live events in order, the exit code of a die, --since,
--until, --filter, --format."""

import json
import os
import queue
import threading
import time


def _refused(r, message):
    assert r.returncode == 125, r.stderr
    assert r.stderr.startswith("ctr: error: ") and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def _read_lines(proc, count, timeout=20):
    """`count` lines of a running `ctr events`, as they come."""
    got = queue.Queue()
    threading.Thread(target=lambda: [got.put(line) for line in proc.stdout],
                     daemon=True).start()
    lines, deadline = [], time.monotonic() + timeout
    while len(lines) < count and time.monotonic() < deadline:
        try:
            lines.append(got.get(timeout=0.5))
        except queue.Empty:
            pass
    return lines


def _actions(out):
    return [json.loads(line)["Action"] for line in out.splitlines()]


def test_events_follow_a_run_stop_rm_live_in_order(ctr):
    watcher = ctr.popen("events", "--format", "json")
    try:
        time.sleep(0.5)  # it is following before anything happens
        ctr("run", "-d", "--name", "web", "busybox", "sh", "-c",
            "trap 'exit 3' TERM; while :; do sleep 0.1; done", check=True)
        ctr("stop", "web", check=True)
        ctr("rm", "web", check=True)
        events = [json.loads(line) for line in _read_lines(watcher, 6)]
        assert watcher.poll() is None  # still following, as docker's does
    finally:
        watcher.kill()
        watcher.wait()
    assert [e["Action"] for e in events] == ["create", "start", "kill", "die", "stop",
                                             "destroy"]
    die = events[3]
    assert die["Type"] == "container"
    assert die["Actor"]["Attributes"] == {"name": "web", "image": "busybox", "exitCode": "3"}
    assert events[2]["Actor"]["Attributes"]["signal"] == "15"
    rec_id = die["Actor"]["ID"]
    assert len(rec_id) == 64 and all(e["Actor"]["ID"] == rec_id for e in events)
    times = [e["timeNano"] for e in events]
    assert times == sorted(times)


def test_events_since_until_filter_and_format(ctr):
    ctr("run", "--name", "one", "-l", "team=a", "busybox", "sh", "-c", "exit 4")
    middle = time.time()
    time.sleep(0.05)
    ctr("run", "--rm", "--name", "two", "busybox", "true", check=True)
    # --until returns: the past events, nothing live
    everything = ctr("events", "--since", "1m", "--until", "0s", "--format", "json",
                     timeout=10, check=True).stdout
    assert _actions(everything) == ["create", "start", "die", "create", "start", "die",
                                    "destroy"]
    later = ctr("events", "--since", str(middle), "--until", "0s", "--format", "json",
                check=True).stdout
    assert _actions(later) == ["create", "start", "die", "destroy"]
    earlier = ctr("events", "--since", "10m", "--until", str(middle),
                  "--format", "{{.Actor.Attributes.name}} {{.Action}}", check=True).stdout
    assert earlier.splitlines() == ["one create", "one start", "one die"]
    dies = ctr("events", "--since", "1m", "--until", "0s", "--filter", "event=die",
               "--format", "{{.Actor.Attributes.name}}={{.Actor.Attributes.exitCode}}",
               check=True).stdout
    assert dies.splitlines() == ["one=4", "two=0"]
    of_two = ctr("events", "--since", "1m", "--until", "0s", "-f", "container=two",
                 "-f", "event=start", "-f", "event=destroy", "--format", "json",
                 check=True).stdout
    assert _actions(of_two) == ["start", "destroy"]
    labelled = ctr("events", "--since", "1m", "--until", "0s", "--filter", "label=team=a",
                   "--filter", "type=container", "--format", "json", check=True).stdout
    assert _actions(labelled) == ["create", "start", "die"]
    # docker's default line: TIME TYPE ACTION ID (attributes, sorted)
    line = ctr("events", "--since", "1m", "--until", "0s", "-f", "event=die", "-f",
               "container=one", check=True).stdout.strip()
    assert line.split(" ", 3)[1:3] == ["container", "die"]
    assert line.endswith("(exitCode=4, image=busybox, name=one, team=a)")
    # --until in the future: live events until then, then it returns by itself
    begun = time.monotonic()
    r = ctr("events", "--until", str(time.time() + 1.5), "--format", "json", check=True)
    assert r.stdout == "" and 1.0 < time.monotonic() - begun < 5


def test_pause_unpause_and_image_events(ctr):
    ctr("run", "-d", "--name", "p", "busybox", "sleep", "100", check=True)
    ctr("pause", "p", check=True)
    ctr("unpause", "p", check=True)
    ctr("rm", "-f", "p", check=True)
    ctr("image", "tag", "busybox", "mine", check=True)
    ctr("image", "rm", "mine", check=True)
    out = ctr("events", "--since", "1m", "--until", "0s", "--format",
              "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}", check=True).stdout
    lines = out.splitlines()
    assert lines[:3] == ["container create p", "container start p", "container pause p"]
    assert "container unpause p" in lines and "container destroy p" in lines
    assert lines[-3:] == ["image tag mine", "image untag mine", "image delete mine"]
    images = ctr("events", "--since", "1m", "--until", "0s", "--filter", "type=image",
                 "--format", "{{.Action}}", check=True).stdout
    assert images.split() == ["tag", "untag", "delete"]


def test_events_are_kept_in_the_state_root_and_rotated(ctr):
    ctr("run", "--rm", "busybox", "true", check=True)
    path = ctr.path("events")
    assert os.path.isfile(path)
    assert [json.loads(line)["Action"] for line in open(path)] == ["create", "start", "die",
                                                                   "destroy"]
    # a log over its bound moves aside at the next event; readers read both files
    with open(path, "ab") as f:
        f.write(b"x" * (1 << 20) + b"\n")
    ctr("run", "--rm", "--name", "after", "busybox", "true", check=True)
    assert os.path.isfile(path + ".1") and os.path.getsize(path) < 4096
    out = ctr("events", "--since", "1m", "--until", "0s", "--format", "json",
              check=True).stdout
    assert _actions(out) == ["create", "start", "die", "destroy"] * 2


def test_bad_events_options_are_refused(ctr):
    _refused(ctr("events", "--filter", "colour=red"), "invalid --filter")
    _refused(ctr("events", "--filter", "type=network"), "invalid --filter")
    _refused(ctr("events", "--since", "yesterday"), "invalid --since")
    _refused(ctr("events", "--until", "soon"), "invalid --until")
    _refused(ctr("events", "--format", "{{if .Action}}"), "template")


def test_an_oom_kill_is_an_event_before_the_die(ctr):
    from test_limits import HOG

    r = ctr("run", "--name", "hog", "-m", "32m", "busybox", *HOG)
    assert r.returncode == 137
    out = ctr("events", "--since", "1m", "--until", "0s", "-f", "container=hog",
              "--format", "{{.Action}} {{.Actor.Attributes.exitCode}}", check=True).stdout
    assert out.splitlines()[-2:] == ["oom <no value>", "die 137"]
