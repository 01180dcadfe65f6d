"""ctr bench's parts that need no root: probe files, statistics, the document and
its views (schema, JUnit, plot), input checks."""

import subprocess
import sys
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from ctr.bench import harness, probes, report
from ctr.errors import InvalidSpec


def test_every_probe_file_has_a_header_and_a_verdict():
    prelude, found = probes.load()
    assert "own_kernel()" in prelude
    names = {p.name for p in found}
    assert {"host-kernel", "host-processes", "host-files", "host-network", "load-module",
            "mount", "reboot", "mknod-block", "kcore", "proc-sys", "memory-limit",
            "pids-limit", "cpu-limit"} <= names
    for p in found:
        assert p.question and p.question != p.name, p.name
        assert "verdict" in p.text, p.name
        assert set(p.exposed_by_design) <= set(harness.KINDS), p.name
    by_name = {p.name: p for p in found}
    assert by_name["host-kernel"].exposed_by_design == ("container",)
    assert by_name["cpu-limit"].harness == "cpu"


def test_verdict_is_the_last_verdict_line_and_evidence_what_came_before():
    assert probes.verdict("a\nb\nverdict: exposed\n") == ("exposed", "a\nb")
    assert probes.verdict("x\nverdict: isolated") == ("isolated", "x")
    assert probes.verdict("half way\nsh: killed\n") == ("error", "half way\nsh: killed")
    assert probes.verdict("") == ("error", "no output")


def test_summary_min_median_p95_max():
    s = report.summary([5.0, 1.0, 3.0, None])
    assert (s["min_ms"], s["median_ms"], s["p95_ms"], s["max_ms"]) == (1.0, 3.0, 5.0, 5.0)
    assert s["samples_ms"] == [5.0, 1.0, 3.0, None]
    assert report.summary(list(range(1, 101)))["p95_ms"] == 95
    assert report.summary([None])["median_ms"] is None


def fake_raw(kinds=("container", "vm")):
    out = {}
    for kind in kinds:
        probe = {"result": "exposed", "question": "Does it run on the host's kernel?",
                 "evidence": "uname -r: x", "exposed_by_design": kind == "container"}
        out[kind] = {
            "phases": {p: [10.0, 20.0] for p in harness.PHASES},
            "cpu": {p: [1.0, 2.0] for p in harness.CPU_PHASES},
            "memory": {"cgroup_mib": 1.0, "processes_rss_mib": 2.0, "monitor_rss_mib": 3.0,
                       "total_mib": 4.0, "processes": 1},
            "probes": {"host-kernel": probe,
                       "mount": {"result": "error", "question": "Can it mount?",
                                 "evidence": "sh: oops", "exposed_by_design": False}},
        }
    return out


def fake_doc(thresholds=("container=14",)):
    config = harness.configure(kinds="container,vm", runs=2, warmup=0,
                               max_start_ms=thresholds)
    host = {"kernel": "6.1", "machine": "x86_64", "cpus": 2, "accel": "tcg"}
    return report.document(config, fake_raw(), version="0.1.0", host=host)


def test_document_validates_and_lists_each_failure():
    doc = fake_doc()
    jsonschema.Draft202012Validator(report.schema()).validate(doc)
    assert doc["version"] == 1 and doc["ok"] is False
    assert doc["failures"] == [
        "container start (median first_output) 15 ms exceeds the limit of 14 ms",
        "container: probe mount gave no verdict",
        "vm: probe host-kernel exposed: Does it run on the host's kernel? (uname -r: x)",
        "vm: probe mount gave no verdict",
    ]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**doc, "version": 2}, report.schema())


def test_junit_one_testcase_per_probe_per_kind_and_per_threshold():
    tree = ET.fromstring(report.junit(fake_doc()))
    cases = tree.findall(".//testcase")
    assert sorted((c.get("classname"), c.get("name")) for c in cases) == [
        ("ctr.bench.container", "host-kernel"), ("ctr.bench.container", "mount"),
        ("ctr.bench.thresholds", "container start <= 14 ms"),
        ("ctr.bench.vm", "host-kernel"), ("ctr.bench.vm", "mount"),
    ]
    by = {(c.get("classname"), c.get("name")): c for c in cases}
    assert by[("ctr.bench.container", "host-kernel")].find("failure") is None  # by design
    assert "exposed by design" in by[("ctr.bench.container", "host-kernel")].find(
        "system-out").text
    assert by[("ctr.bench.vm", "host-kernel")].find("failure") is not None
    assert by[("ctr.bench.vm", "mount")].find("error") is not None
    assert by[("ctr.bench.thresholds", "container start <= 14 ms")].find("failure") is not None


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".svg", b"<svg")])
def test_plot_writes_an_image(tmp_path, suffix, magic):
    path = str(tmp_path / f"plot{suffix}")
    report.plot(fake_doc(()), path)
    data = open(path, "rb").read()
    assert magic in data[:2000] and len(data) > 1000


def test_table_has_phases_memory_and_the_probe_matrix():
    text = report.table(fake_doc())
    for fragment in ("first_output", "teardown", "MEMORY", "PROBE", "exposed (by design)",
                     "FAILED: container start"):
        assert fragment in text


@pytest.mark.parametrize("kw,fragment", [
    ({"kinds": "container,lxc"}, "invalid --kinds"),
    ({"kinds": ""}, "invalid --kinds"),
    ({"runs": 0}, "invalid --runs"),
    ({"warmup": -1}, "invalid --warmup"),
    ({"memory": "lots"}, "invalid --memory"),
    ({"memory": "8m"}, "a VM needs at least"),
    ({"max_start_ms": ["qemu=5"]}, "invalid --max-start-ms"),
    ({"max_start_ms": ["vm=soon"]}, "invalid --max-start-ms"),
    ({"kinds": "container", "max_start_ms": ["vm=5"]}, "vm is not benchmarked"),
    ({"plot_path": "startup.gif"}, "must end in .png or .svg"),
    ({"json_path": "/nonexistent/b.json"}, "no such folder"),
    ({"only_probes": ["telepathy"]}, "unknown probe"),
    ({"network": "host"}, "not possible for a VM"),
])
def test_bad_input_is_refused(kw, fragment):
    with pytest.raises(InvalidSpec, match=fragment):
        harness.configure(**kw)


def test_bad_input_from_the_cli_is_one_line_125(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ctr", "--root", str(tmp_path), "bench",
                        "--plot", "x.gif"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 125
    assert r.stderr.startswith("ctr: error: --plot x.gif") and r.stderr.count("\n") == 1
    assert not (tmp_path / "instances").exists()
