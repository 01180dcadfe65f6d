"""The harness behind `ctr bench`: it drives ctr the way a CI job would, as
`ctr` subprocesses against the caller's state root, and measures.

For each kind:
- runs: `ctr create`, `ctr start -a`, `ctr rm`, timed with perf_counter; CPU time
  from the rusage os.wait4 returns (ctr and every child it reaped: for a VM, QEMU);
- memory: one idle instance (`sleep 3600`), its cgroup's usage, the RSS of the
  processes in that cgroup and of its monitor (outside it);
- probes: the same idle instance runs each probe with `ctr exec`.
Whatever it creates it removes, on errors and Ctrl-C too.
"""

import os
import platform
import secrets
import selectors
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

from ctr.bench import probes as pr
from ctr.errors import CtrError, InvalidSpec

KINDS = ("container", "vm")
PHASES = ("create", "first_output", "exit", "teardown", "total")
CPU_PHASES = ("create", "start", "teardown", "total")
DEFAULT_COMMAND = ("echo", "ready")
PLOT_FORMATS = (".png", ".svg")
IDLE_PIDS_LIMIT = 64
IDLE_CPUS = 0.5
CPU_TOLERANCE = 1.25  # usage/wall may exceed --cpus by this factor and still count as limited
STEP_TIMEOUT = 180.0  # seconds any one ctr call may take (a VM boots in 2-3 s under TCG)


class BenchError(CtrError):
    """The benchmark could not run: an instance failed to start, a probe hung..."""


@dataclass(frozen=True)
class Threshold:
    kind: str
    max_ms: float


@dataclass(frozen=True)
class Config:
    image: str = "busybox"
    kinds: tuple = KINDS
    runs: int = 5
    warmup: int = 1
    memory: str = "128m"
    memory_bytes: int = 128 << 20
    network: str = "none"
    cgroup_parent: str | None = None
    command: tuple = DEFAULT_COMMAND
    thresholds: tuple = ()
    probes: bool = True
    measure_memory: bool = True
    only_probes: tuple = ()
    outputs: dict = field(default_factory=dict)  # json/junit/plot -> path

    def to_dict(self):
        return {
            "image": self.image, "kinds": list(self.kinds), "runs": self.runs,
            "warmup": self.warmup, "memory": self.memory, "memory_bytes": self.memory_bytes,
            "network": self.network, "cgroup_parent": self.cgroup_parent,
            "command": list(self.command),
            "pids_limit": IDLE_PIDS_LIMIT, "cpus": IDLE_CPUS,
            "probes": self.probes, "measure_memory": self.measure_memory,
        }


def parse_threshold(text):
    kind, sep, ms = text.partition("=")
    if not sep or kind not in KINDS:
        raise InvalidSpec(f"invalid --max-start-ms {text!r}: expected KIND=MS with KIND one of "
                          f"{', '.join(KINDS)}")
    try:
        value = float(ms)
    except ValueError:
        value = -1
    if value <= 0:
        raise InvalidSpec(f"invalid --max-start-ms {text!r}: MS must be a positive number")
    return Threshold(kind, value)


def _check_output(opt, path):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InvalidSpec(f"{opt} {path}: no such folder {folder}")


def configure(*, image="busybox", kinds="container,vm", runs=5, warmup=1, memory="128m",
              network="none", cgroup_parent=None, command=(), max_start_ms=(), probes=True,
              measure_memory=True, only_probes=(), json_path=None, junit_path=None, plot_path=None):
    """Every input checked, before anything is created."""
    from ctr.spec import VM_MIN_MEMORY, check_cgroup_parent, check_name, check_network, parse_size

    kind_list = tuple(k.strip() for k in kinds.split(",") if k.strip())
    unknown = [k for k in kind_list if k not in KINDS]
    if unknown or not kind_list:
        raise InvalidSpec(f"invalid --kinds {kinds!r}: expected a list of {', '.join(KINDS)}")
    if runs < 1:
        raise InvalidSpec(f"invalid --runs {runs}: at least 1")
    if warmup < 0:
        raise InvalidSpec(f"invalid --warmup {warmup}: at least 0")
    check_name(image, "image name")
    memory_bytes = parse_size(memory, "--memory")
    network = check_network(network)
    if "vm" in kind_list and memory_bytes < VM_MIN_MEMORY:
        raise InvalidSpec(f"--memory {memory}: a VM needs at least {VM_MIN_MEMORY >> 20}m")
    if "vm" in kind_list and (network == "host" or network.startswith("container:")):
        raise InvalidSpec(f"--network {network} is not possible for a VM")
    thresholds = tuple(parse_threshold(t) for t in max_start_ms)
    for t in thresholds:
        if t.kind not in kind_list:
            raise InvalidSpec(f"--max-start-ms {t.kind}={t.max_ms:g}: {t.kind} is not benchmarked "
                              f"(--kinds {','.join(kind_list)})")
    known = {p.name for p in pr.load()[1]}
    for name in only_probes:
        if name not in known:
            raise InvalidSpec(f"unknown probe {name!r}: expected one of {', '.join(sorted(known))}")
    outputs = {}
    for opt, key, path in (("--json", "json", json_path), ("--junit", "junit", junit_path),
                           ("--plot", "plot", plot_path)):
        if path:
            _check_output(opt, path)
            outputs[key] = path
    if plot_path and os.path.splitext(plot_path)[1].lower() not in PLOT_FORMATS:
        raise InvalidSpec(f"--plot {plot_path}: the name must end in .png or .svg")
    return Config(image=image, kinds=kind_list, runs=runs, warmup=warmup, memory=memory,
                  memory_bytes=memory_bytes, network=network,
                  cgroup_parent=check_cgroup_parent(cgroup_parent),
                  command=tuple(command) or DEFAULT_COMMAND, thresholds=thresholds,
                  probes=probes, measure_memory=measure_memory, only_probes=tuple(only_probes),
                  outputs=outputs)


def prepare(config, root=None, progress=None):
    """What the instances need, as `ctr run` would find it: the image (built from
    its recipe on first use) and, for VMs, a guest kernel."""
    from ctr.images.store import ImageStore
    from ctr.store import Store

    store = Store(root)
    store.ensure()
    ImageStore(store).ensure(config.image, progress=progress)
    if "vm" in config.kinds:
        from ctr.vm import kernel

        kernel.find(store)


# -- running ctr ---------------------------------------------------------------------


@dataclass
class Call:
    """One finished ctr subprocess: status, output, seconds, CPU seconds."""
    code: int
    stdout: str
    stderr: str
    wall: float
    cpu: float
    first_output: float | None = None

    def why(self):
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {self.code}"


def _cpu(rusage):
    return rusage.ru_utime + rusage.ru_stime


class Ctr:
    """The ctr CLI as subprocesses: this very installation, the caller's root."""

    def __init__(self, root=None):
        # -P: not the current folder first on sys.path (a source checkout there
        # would shadow the installed ctr and its built helper)
        self.argv = [sys.executable, "-P", "-m", "ctr"] + (["--root", root] if root else [])

    def call(self, *args, timeout=STEP_TIMEOUT):
        """Run `ctr ARGS`; its output, wall time, CPU time and the moment of its
        first byte on stdout (seconds after it was started)."""
        start = time.perf_counter()
        proc = subprocess.Popen([*self.argv, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err, first = [], [], None
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ, out)
                sel.register(proc.stderr, selectors.EVENT_READ, err)
                deadline = start + timeout
                while sel.get_map():
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        raise BenchError(f"ctr {' '.join(args[:2])} took more than "
                                         f"{timeout:.0f} s")
                    for key, _ in sel.select(left):
                        chunk = os.read(key.fd, 65536)
                        if not chunk:
                            sel.unregister(key.fileobj)
                            continue
                        if key.data is out and first is None:
                            first = time.perf_counter() - start
                        key.data.append(chunk)
            _, status, rusage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        return Call(proc.returncode, b"".join(out).decode(errors="replace"),
                    b"".join(err).decode(errors="replace"), wall, _cpu(rusage), first)

    def check(self, what, *args, timeout=STEP_TIMEOUT):
        call = self.call(*args, timeout=timeout)
        if call.code != 0:
            raise BenchError(f"{what}: ctr {args[0]}: {call.why()}")
        return call


# -- measuring -----------------------------------------------------------------------


def _kind_args(kind, config):
    parent = ["--cgroup-parent", config.cgroup_parent] if config.cgroup_parent else []
    return [*(["--vm"] if kind == "vm" else []), "--network", config.network,
            "-m", config.memory, *parent]


def _rss_bytes(pid):
    from ctr.cgroups import read_kib

    return read_kib(f"/proc/{pid}/status", "VmRSS")


def _interrupt(signum, frame):
    del frame
    raise KeyboardInterrupt(f"signal {signum}")


def _mib(n):
    return None if n is None else round(n / (1 << 20), 2)


class Bench:
    """One benchmark: call run(), get the document's "kinds" part."""

    def __init__(self, config, root=None, progress=None):
        self.config = config
        self.ctr = Ctr(root)
        self.progress = progress or (lambda step, total, what: None)
        self.token = secrets.token_hex(4)
        self.made = []  # instance names to remove, whatever happens
        self.step = 0
        self.prelude, probes = pr.load()
        self.probes = [p for p in probes if not config.only_probes or p.name in config.only_probes]
        per_kind = config.warmup + config.runs
        if config.measure_memory or (config.probes and self.probes):
            per_kind += 1
        if config.probes:
            per_kind += len(self.probes)
        self.total = per_kind * len(config.kinds)

    def _tick(self, what):
        self.step += 1
        self.progress(self.step, self.total, what)

    def _name(self, kind, what):
        name = f"bench-{kind}-{what}-{self.token}"
        self.made.append(name)
        return name

    def run(self):
        with ExitStack() as stack:
            stack.callback(self._cleanup)
            # SIGTERM (a CI job cancelled) cleans up like Ctrl-C does
            old = signal.signal(signal.SIGTERM, _interrupt)
            stack.callback(signal.signal, signal.SIGTERM, old)
            host = None
            if self.config.probes:
                # Its exit registered before its enter: a Ctrl-C anywhere in or
                # right after the enter still removes what the enter made.
                host = pr.HostSide()
                stack.push(host)
                host.__enter__()
            return {kind: self._kind(kind, host) for kind in self.config.kinds}

    def _cleanup(self):
        """Remove every instance this bench named; ignore the ones already gone.
        Ctrl-C again is held off until that is done."""
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for name in self.made:
                try:
                    self.ctr.call("rm", "-f", name, timeout=60)
                except (BenchError, OSError):
                    pass
            self.made.clear()
        finally:
            signal.signal(signal.SIGINT, old)

    def _kind(self, kind, host):
        cfg = self.config
        samples = {p: [] for p in PHASES}
        cpu = {p: [] for p in CPU_PHASES}
        for i in range(cfg.warmup + cfg.runs):
            warm = i < cfg.warmup
            self._tick(f"{kind} warmup {i + 1}" if warm else f"{kind} run {i - cfg.warmup + 1}")
            times, cpus = self._one_run(kind, "warm" if warm else f"run{i - cfg.warmup + 1}")
            if not warm:
                for p in PHASES:
                    samples[p].append(times[p])
                for p in CPU_PHASES:
                    cpu[p].append(cpus[p])
        out = {"phases": samples, "cpu": cpu, "memory": None, "probes": {}}
        if cfg.measure_memory or (cfg.probes and self.probes):
            self._tick(f"{kind} idle instance")
            name = self._idle(kind)
            if cfg.measure_memory:
                out["memory"] = self._memory(name)
            if cfg.probes:
                env = host.env(cfg.memory_bytes, IDLE_PIDS_LIMIT, IDLE_CPUS)
                for probe in self.probes:
                    self._tick(f"{kind} probe {probe.name}")
                    out["probes"][probe.name] = self._probe(kind, name, probe, env)
            self.ctr.call("rm", "-f", name, timeout=60)
            self.made.remove(name)
        return out

    def _one_run(self, kind, label):
        cfg = self.config
        name = self._name(kind, label)
        what = f"{kind} {label}"
        create = self.ctr.check(what, "create", "--name", name, *_kind_args(kind, cfg),
                                cfg.image, "--", *cfg.command)
        start = self.ctr.call("start", "-a", name)
        if start.code != 0:
            raise BenchError(f"{what}: `{' '.join(cfg.command)}` exited {start.code}: "
                             f"{start.why()}")
        rm = self.ctr.check(what, "rm", name)
        self.made.remove(name)
        ms = 1000.0
        first = None if start.first_output is None else start.first_output * ms
        times = {"create": create.wall * ms, "first_output": first, "exit": start.wall * ms,
                 "teardown": rm.wall * ms}
        times["total"] = times["create"] + times["exit"] + times["teardown"]
        cpus = {"create": create.cpu * ms, "start": start.cpu * ms, "teardown": rm.cpu * ms}
        cpus["total"] = sum(cpus.values())
        return ({k: None if v is None else round(v, 3) for k, v in times.items()},
                {k: round(v, 3) for k, v in cpus.items()})

    def _idle(self, kind):
        """The long-lived idle instance memory is measured on and probes run in."""
        cfg = self.config
        name = self._name(kind, "idle")
        self.ctr.check(f"{kind} idle instance", "run", "-d", "--name", name,
                       *_kind_args(kind, cfg), "--pids-limit", str(IDLE_PIDS_LIMIT),
                       "--cpus", str(IDLE_CPUS), cfg.image, "sleep", "3600")
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:  # a VM answers exec once its agent is up
            call = self.ctr.call("exec", name, "true", timeout=60)
            if call.code == 0:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{kind} idle instance never answered: {call.why()}")
            time.sleep(0.2)
        time.sleep(1.0)  # let it settle
        return name

    def _state(self, name):
        import json

        return json.loads(self.ctr.check(name, "inspect", name).stdout)["state"]

    def _cgroup(self, name):
        from ctr import cgroups

        return cgroups.at(self._state(name)["cgroups"])

    def _memory(self, name):
        state = self._state(name)
        from ctr import cgroups

        cg = cgroups.at(state["cgroups"])
        pids = cg.pids()
        usage = cg.stats()["memory_usage"]
        procs = sum(_rss_bytes(p) for p in pids)
        monitor = state.get("reaper_pid")
        monitor_rss = _rss_bytes(monitor) if monitor and monitor not in pids else 0
        return {
            "cgroup_mib": _mib(usage),
            "processes_rss_mib": _mib(procs),
            "monitor_rss_mib": _mib(monitor_rss),
            "total_mib": _mib((usage or procs) + monitor_rss),
            "processes": len(pids),
        }

    def _probe(self, kind, name, probe, env):
        cg = self._cgroup(name) if probe.harness == "cpu" else None
        before = cg.stats()["cpu_usage_ns"] if cg else None
        start = time.perf_counter()
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        call = self.ctr.call("exec", *env_args, name, "sh", "-c",
                             pr.script(self.prelude, probe), timeout=STEP_TIMEOUT)
        wall = time.perf_counter() - start
        result, evidence = pr.verdict(call.stdout + call.stderr)
        if cg and before is not None and result != pr.ERROR:
            used = (cg.stats()["cpu_usage_ns"] - before) / 1e9
            share = used / wall if wall > 0 else 0.0
            limited = share <= IDLE_CPUS * CPU_TOLERANCE
            result = pr.ISOLATED if limited else pr.EXPOSED
            evidence += (f"\ncgroup CPU time {used:.2f} s over {wall:.2f} s = {share:.2f} CPUs "
                         f"(limit {IDLE_CPUS}, tolerance x{CPU_TOLERANCE})")
        return {
            "result": result,
            "question": probe.question,
            "evidence": evidence,
            "exposed_by_design": kind in probe.exposed_by_design,
        }


def host_facts(kinds):
    accel = None
    if "vm" in kinds:
        from ctr.vm.launch import choose_accel

        accel = choose_accel(None)[0]
    return {"kernel": platform.release(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "accel": accel}
