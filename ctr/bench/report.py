"""What `ctr bench` measured, as a document (the JSON schema in schema.json) and
the views of it: the terminal table, JUnit XML, the plot, the verdict."""

import json
import math
import statistics
from importlib import resources

from ctr.bench.harness import CPU_PHASES, PHASES
from ctr.bench.probes import ERROR, EXPOSED

VERSION = 1


def summary(samples):
    """min/median/p95/max of the samples that exist (p95: nearest rank)."""
    values = sorted(v for v in samples if v is not None)
    if not values:
        return {"min_ms": None, "median_ms": None, "p95_ms": None, "max_ms": None,
                "samples_ms": list(samples)}
    p95 = values[max(0, math.ceil(0.95 * len(values)) - 1)]
    return {"min_ms": values[0], "median_ms": round(statistics.median(values), 3),
            "p95_ms": p95, "max_ms": values[-1], "samples_ms": list(samples)}


def start_ms(kind_doc):
    """What --max-start-ms compares: the median time from `ctr start` to the
    command's first output (to its exit when it prints nothing)."""
    phases = kind_doc["phases"]
    if phases["first_output"]["median_ms"] is not None:
        return "first_output", phases["first_output"]["median_ms"]
    return "exit", phases["exit"]["median_ms"]


def unexpected(kind, name, probe):
    """A failure line for a probe that is exposed (not by design) or broke."""
    if probe["result"] == EXPOSED and not probe["exposed_by_design"]:
        first = (probe["evidence"].splitlines() or [""])[-1]
        return f"{kind}: probe {name} exposed: {probe['question']} ({first})"
    if probe["result"] == ERROR:
        return f"{kind}: probe {name} gave no verdict"
    return None


def document(config, raw, *, version, host):
    """The JSON document from the harness's raw measurements."""
    kinds = {}
    for kind, data in raw.items():
        kinds[kind] = {
            "phases": {p: summary(data["phases"][p]) for p in PHASES},
            "cpu_ms": {p: summary(data["cpu"][p]) for p in CPU_PHASES},
            "memory": data["memory"],
            "probes": data["probes"],
        }
    thresholds = []
    for t in config.thresholds:
        phase, value = start_ms(kinds[t.kind])
        ok = value is not None and value <= t.max_ms
        message = (f"{t.kind} start (median {phase}) {value:.0f} ms "
                   f"{'<=' if ok else 'exceeds'} the limit of {t.max_ms:g} ms")
        thresholds.append({"kind": t.kind, "max_ms": t.max_ms, "phase": phase,
                           "measured_ms": value, "ok": ok, "message": message})
    doc = {"version": VERSION, "ctr": version, "host": host, "config": config.to_dict(),
           "kinds": kinds, "thresholds": thresholds}
    doc["failures"] = failures(doc)
    doc["ok"] = not doc["failures"]
    return doc


def failures(doc):
    """One line per reason the run fails: a threshold missed, a probe exposed."""
    out = [t["message"] for t in doc["thresholds"] if not t["ok"]]
    for kind, data in doc["kinds"].items():
        for name, probe in data["probes"].items():
            line = unexpected(kind, name, probe)
            if line:
                out.append(line)
    return out


def schema():
    return json.loads((resources.files("ctr.bench") / "schema.json").read_text())


# -- the table ---------------------------------------------------------------------------


def _ms(v):
    return "-" if v is None else f"{v:.0f}"


def _columns(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def table(doc):
    kinds = list(doc["kinds"])
    cfg = doc["config"]
    parts = [f"ctr bench: {cfg['image']}, `{' '.join(cfg['command'])}`, {cfg['runs']} runs "
             f"per kind, --memory {cfg['memory']}, --network {cfg['network']}"]
    rows = [("PHASE (ms)", "KIND", "MIN", "MEDIAN", "P95", "MAX")]
    for phase in PHASES:
        for kind in kinds:
            s = doc["kinds"][kind]["phases"][phase]
            rows.append((phase, kind, _ms(s["min_ms"]), _ms(s["median_ms"]), _ms(s["p95_ms"]),
                         _ms(s["max_ms"])))
    rows.append(("cpu (ctr + children)", "", "", "", "", ""))
    for kind in kinds:
        s = doc["kinds"][kind]["cpu_ms"]["total"]
        rows.append(("  cpu_ms per run", kind, _ms(s["min_ms"]), _ms(s["median_ms"]),
                     _ms(s["p95_ms"]), _ms(s["max_ms"])))
    parts.append(_columns(rows))
    if any(doc["kinds"][k]["memory"] for k in kinds):
        rows = [("MEMORY (MiB, idle)", "CGROUP", "PROCESSES RSS", "MONITOR RSS", "TOTAL")]
        for kind in kinds:
            m = doc["kinds"][kind]["memory"]
            if m:
                rows.append((kind, *(f"{m[k]:.1f}" if m[k] is not None else "-" for k in
                                     ("cgroup_mib", "processes_rss_mib", "monitor_rss_mib",
                                      "total_mib"))))
        parts.append(_columns(rows))
    names = sorted({n for k in kinds for n in doc["kinds"][k]["probes"]})
    if names:
        rows = [("PROBE", *(k.upper() for k in kinds), "QUESTION")]
        for name in names:
            cells, question = [], ""
            for kind in kinds:
                p = doc["kinds"][kind]["probes"].get(name)
                if p is None:
                    cells.append("-")
                    continue
                question = p["question"]
                mark = " (by design)" if p["result"] == EXPOSED and p["exposed_by_design"] else ""
                cells.append(p["result"] + mark)
            rows.append((name, *cells, question))
        parts.append(_columns(rows))
    for t in doc["thresholds"]:
        parts.append(("ok: " if t["ok"] else "FAILED: ") + t["message"])
    return "\n\n".join(parts)


# -- JUnit XML -----------------------------------------------------------------------------


def junit(doc):
    """One testcase per probe per kind (classname ctr.bench.KIND) and per
    threshold (ctr.bench.thresholds)."""
    import xml.etree.ElementTree as ET

    suites = ET.Element("testsuites", name="ctr bench")
    for kind, data in doc["kinds"].items():
        suite = ET.SubElement(suites, "testsuite", name=f"ctr.bench.{kind}")
        counts = {"tests": 0, "failures": 0, "errors": 0}
        for name, p in data["probes"].items():
            case = ET.SubElement(suite, "testcase", classname=f"ctr.bench.{kind}", name=name)
            counts["tests"] += 1
            text = f"{p['question']}\n{p['evidence']}"
            if p["result"] == ERROR:
                counts["errors"] += 1
                ET.SubElement(case, "error", message=f"{p['question']}: no verdict").text = text
            elif p["result"] == EXPOSED and not p["exposed_by_design"]:
                counts["failures"] += 1
                ET.SubElement(case, "failure", message=f"exposed: {p['question']}").text = text
            else:
                note = " (exposed by design)" if p["result"] == EXPOSED else ""
                ET.SubElement(case, "system-out").text = f"{p['result']}{note}\n{text}"
        suite.attrib.update({k: str(v) for k, v in counts.items()})
    if doc["thresholds"]:
        suite = ET.SubElement(suites, "testsuite", name="ctr.bench.thresholds",
                              tests=str(len(doc["thresholds"])),
                              failures=str(sum(not t["ok"] for t in doc["thresholds"])),
                              errors="0")
        for t in doc["thresholds"]:
            case = ET.SubElement(suite, "testcase", classname="ctr.bench.thresholds",
                                 name=f"{t['kind']} start <= {t['max_ms']:g} ms")
            if not t["ok"]:
                ET.SubElement(case, "failure", message=t["message"]).text = t["message"]
            else:
                ET.SubElement(case, "system-out").text = t["message"]
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


# -- the plot --------------------------------------------------------------------------------


def plot(doc, path):
    """Startup time distribution: one panel per phase, the kinds side by side
    (a box and the samples over it). The file's suffix picks PNG or SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(doc["kinds"])
    phases = [p for p in PHASES
              if any(v is not None for k in kinds
                     for v in doc["kinds"][k]["phases"][p]["samples_ms"])]
    fig, axes = plt.subplots(1, len(phases), figsize=(3.2 * len(phases), 3.6), squeeze=False)
    for ax, phase in zip(axes[0], phases, strict=True):
        data = [[v for v in doc["kinds"][k]["phases"][phase]["samples_ms"] if v is not None]
                for k in kinds]
        ax.boxplot([d or [math.nan] for d in data], widths=0.5, showfliers=False)
        for i, d in enumerate(data, start=1):
            ax.plot([i] * len(d), d, "o", alpha=0.6, markersize=4)
        ax.set_xticks(range(1, len(kinds) + 1), kinds)
        ax.set_title(phase)
        ax.set_ylabel("ms")
        ax.set_ylim(bottom=0)
    cfg = doc["config"]
    fig.suptitle(f"ctr bench: {cfg['image']} `{' '.join(cfg['command'])}`, {cfg['runs']} runs, "
                 f"{doc['host']['kernel']}")
    fig.tight_layout()
    fig.savefig(path, format=path.rsplit(".", 1)[-1].lower())
    plt.close(fig)


def check_plot_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from ctr.errors import InvalidSpec

        raise InvalidSpec("--plot needs matplotlib: pip install 'ctr[plot]' "
                          "(make install does)") from None

