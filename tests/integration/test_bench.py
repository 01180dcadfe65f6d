"""`ctr bench` end to end: both kinds for real (VMs under TCG here), one shared
run with --runs 1 read by several tests, and short container-only runs for the
failure paths."""

import glob
import json
import os
import platform
import shutil
import subprocess
import types
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from helpers import CGROUP_ROOT, Ctr, in_a_pty, leftovers, processes

from ctr.bench import probes, report


def bench_root(tmp_path, busybox_image, vm_kernels):
    """A state root with the session's image and kernel, and a cgroup parent of
    its own (--cgroup-parent of the benches)."""
    root = str(tmp_path / "root")
    os.makedirs(os.path.join(root, "images"))
    subprocess.run(["cp", "-al", busybox_image, os.path.join(root, "images", "busybox")],
                   check=True)
    os.symlink(vm_kernels, os.path.join(root, "kernels"))
    ctr = Ctr(root)
    ctr.parent = f"ctr-bench-test-{os.path.basename(tmp_path)}-{os.getpid()}"
    return ctr


def parent_dirs(ctr):
    return [os.path.join(CGROUP_ROOT, h, ctr.parent) for h in os.listdir(CGROUP_ROOT)
            if os.path.isdir(os.path.join(CGROUP_ROOT, h, ctr.parent))]


def bench_leftovers(ctr):
    """helpers.leftovers narrowed to this bench: other suites may run on the
    machine meanwhile, with instance cgroups and monitors of their own; this
    bench's cgroups are under its own parent, its monitors named bench-*."""
    left = [x for x in leftovers(ctr.root)
            if not x.startswith(CGROUP_ROOT) and "ctr-monitor" not in x]
    left += processes("ctr-monitor bench-")
    for parent in parent_dirs(ctr):
        left += [os.path.join(parent, d) for d in os.listdir(parent)
                 if os.path.isdir(os.path.join(parent, d))]
    return left


def remove(ctr):
    """After a test: whatever it kept, then the cgroup parents."""
    for name in instances(ctr):
        ctr("rm", "-f", name)
    left = bench_leftovers(ctr)
    for parent in parent_dirs(ctr):
        try:
            os.rmdir(parent)
        except OSError:
            pass
    shutil.rmtree(ctr.root, ignore_errors=True)
    return left


def instances(ctr):
    path = ctr.path("instances")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


@pytest.fixture(scope="module")
def run(tmp_path_factory, busybox_image, vm_kernels):
    """One bench of both kinds, every output asked for. (Not the session's
    leftover check, cgroup_parents_before: it sees other suites' instances.)"""
    tmp = tmp_path_factory.mktemp("bench")
    ctr = bench_root(tmp, busybox_image, vm_kernels)
    out = types.SimpleNamespace(ctr=ctr, json=str(tmp / "b.json"), junit=str(tmp / "b.xml"),
                                plot=str(tmp / "b.png"),
                                tmpdirs=set(glob.glob("/tmp/ctr-bench-probes-*")))
    out.proc = ctr("bench", "--cgroup-parent", ctr.parent, "--runs", "1", "--warmup", "0",
                   "--json", out.json, "--junit", out.junit, "--plot", out.plot, timeout=600)
    assert os.path.exists(out.json), out.proc.stderr
    with open(out.json) as f:
        out.doc = json.load(f)
    yield out
    remove(ctr)


def test_the_run_succeeds_or_names_each_failure(run):
    doc = run.doc
    assert "Traceback" not in run.proc.stderr
    assert run.proc.returncode == (0 if doc["ok"] else 1), run.proc.stderr
    assert run.proc.stderr.splitlines() == [f"ctr: bench: {line}" for line in doc["failures"]]
    # piped: the table, no progress bar
    assert "PHASE (ms)" in run.proc.stdout and "PROBE" in run.proc.stdout
    assert "\r" not in run.proc.stderr


def test_json_validates_and_has_every_phase_of_both_kinds(run):
    jsonschema.Draft202012Validator(report.schema()).validate(run.doc)
    assert set(run.doc["kinds"]) == {"container", "vm"}
    for kind, data in run.doc["kinds"].items():
        for phase in ("create", "first_output", "exit", "teardown", "total"):
            s = data["phases"][phase]
            assert len(s["samples_ms"]) == 1 and s["median_ms"] > 0, (kind, phase)
        assert data["cpu_ms"]["total"]["median_ms"] > 0
        assert data["memory"]["total_mib"] > 0 and data["memory"]["monitor_rss_mib"] > 0
    vm, container = run.doc["kinds"]["vm"], run.doc["kinds"]["container"]
    assert vm["phases"]["exit"]["median_ms"] > container["phases"]["exit"]["median_ms"]
    assert vm["memory"]["processes_rss_mib"] > container["memory"]["processes_rss_mib"]
    assert run.doc["host"]["accel"] in ("kvm", "tcg")


def test_junit_has_one_testcase_per_probe_per_kind(run):
    tree = ET.parse(run.junit).getroot()
    names = sorted(p.name for p in probes.load()[1])
    for kind in ("container", "vm"):
        cases = tree.findall(f".//testcase[@classname='ctr.bench.{kind}']")
        assert sorted(c.get("name") for c in cases) == names
    failed = {(c.get("classname").rsplit(".", 1)[1], c.get("name"))
              for c in tree.iter("testcase") if c.find("failure") is not None}
    assert failed == {(k, n) for k, d in run.doc["kinds"].items() for n, p in d["probes"].items()
                      if p["result"] == "exposed" and not p["exposed_by_design"]}


def test_plot_is_a_png(run):
    with open(run.plot, "rb") as f:
        data = f.read()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_isolation_matches_reality(run):
    container, vm = run.doc["kinds"]["container"]["probes"], run.doc["kinds"]["vm"]["probes"]
    # the VM runs a kernel of its own; the container shares the host's, by design
    assert vm["host-kernel"]["result"] == "isolated"
    assert platform.release() not in vm["host-kernel"]["evidence"].splitlines()[0].split()[1]
    assert container["host-kernel"]["result"] == "exposed"
    assert container["host-kernel"]["exposed_by_design"]
    assert f"uname -r: {platform.release()} " in container["host-kernel"]["evidence"]
    # both stop a memory hog; both keep the host's processes, files and listener out
    for kind_probes in (container, vm):
        assert kind_probes["memory-limit"]["result"] == "isolated"
        assert "the hog was stopped" in kind_probes["memory-limit"]["evidence"]
        for name in ("host-processes", "host-files", "host-network", "mount", "proc-sys",
                     "pids-limit", "cpu-limit"):
            assert kind_probes[name]["result"] == "isolated", (name, kind_probes[name])
    assert "started 100 of 100" in vm["pids-limit"]["evidence"]  # the guest's own kernel
    assert "guest's own kernel" in vm["mount"]["evidence"]


def test_the_harness_leaves_nothing_behind(run):
    assert instances(run.ctr) == []
    assert bench_leftovers(run.ctr) == []
    assert parent_dirs(run.ctr)  # the instances were in the test's own cgroup parent
    assert processes("ctr-bench-marker") == []
    assert set(glob.glob("/tmp/ctr-bench-probes-*")) <= run.tmpdirs


@pytest.fixture
def ctr_bench(tmp_path, busybox_image, vm_kernels):
    ctr = bench_root(tmp_path, busybox_image, vm_kernels)
    yield ctr
    left = remove(ctr)
    assert not left, f"the test left things behind: {left}"


def test_an_impossible_threshold_fails_with_exit_1_and_says_why(ctr_bench, tmp_path):
    junit, svg = str(tmp_path / "t.xml"), str(tmp_path / "t.svg")
    r = ctr_bench("bench", "--cgroup-parent", ctr_bench.parent, "--kinds", "container",
                  "--runs", "1", "--warmup", "0", "--no-probes", "--no-memory",
                  "--max-start-ms", "container=0.001", "--junit", junit, "--plot", svg,
                  "--", "echo", "hi", timeout=300)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("ctr: bench: container start (median first_output) ")
    assert "exceeds the limit of 0.001 ms" in r.stderr and r.stderr.count("\n") == 1
    assert "FAILED: container start" in r.stdout
    case = ET.parse(junit).getroot().find(".//testcase[@classname='ctr.bench.thresholds']")
    assert case.get("name") == "container start <= 0.001 ms" and case.find("failure") is not None
    assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert instances(ctr_bench) == []


def test_a_command_that_fails_stops_the_bench_and_cleans_up(ctr_bench):
    r = ctr_bench("bench", "--cgroup-parent", ctr_bench.parent, "--kinds", "container",
                  "--runs", "2", "--warmup", "0", "--no-probes", "--no-memory", "--format", "json",
                  "--", "sh", "-c", "exit 3")
    assert r.returncode == 125
    assert r.stderr.startswith("ctr: error: container run1: `sh -c exit 3` exited 3"), r.stderr
    assert r.stdout == "" and instances(ctr_bench) == []


def test_bad_input_is_refused_before_anything_starts(ctr_bench, tmp_path):
    os.unlink(ctr_bench.path("kernels"))
    os.makedirs(ctr_bench.path("kernels"))
    r = ctr_bench("bench", "--kinds", "vm", "--runs", "1")
    assert r.returncode == 125 and "no guest kernel" in r.stderr, r.stderr
    r = ctr_bench("bench", "--kinds", "container", "--image", "nosuch")
    assert r.returncode == 125 and "no such image: nosuch" in r.stderr, r.stderr
    assert instances(ctr_bench) == []


def test_progress_on_a_terminal_and_ctrl_c_cleans_up(ctr_bench):
    args = ("bench", "--cgroup-parent", ctr_bench.parent, "--kinds", "container", "--runs", "1",
            "--warmup", "0", "--probe", "host-kernel", "--no-memory")
    code, out = in_a_pty(ctr_bench, *args)
    assert code == 0, out
    assert b"[1/3] [" in out and b"container run 1" in out and b"probe host-kernel" in out
    # Ctrl-C in the middle (timeout's own status is 124): nothing left
    code, out = in_a_pty(ctr_bench, *args[:-3], "--runs", "3", "--probe", "cpu-limit",
                         wrapper=("timeout", "-s", "INT", "3"))
    assert code == 124 and out.rstrip().endswith(b"ctr: error: aborted"), out
    assert instances(ctr_bench) == []
    assert processes("ctr-bench-marker") == []
