"""The VM driver: the instance's image booted under QEMU (see ctr/vm/launch.py).

Same protocol as the container driver (ctr.drivers): `start` returns once the
guest's agent has exec'd the command (or raises what the guest reported), the
caller waits and records. The instance's pid is QEMU's; signals other than
SIGKILL go to the command inside the guest (ctr/vm/agent.py, the host's side
of the agent).
"""

import json
import os
import signal
import time

from ctr import cgroups, report
from ctr.drivers import common
from ctr.errors import EXIT_CTR, StartError
from ctr.native import CLONE_NEWNS, MS_PRIVATE, MS_REC, SYSCALLS, unshare
from ctr.process import InitFailure, env_home
from ctr.revert import Reverter
from ctr.signals import reset_signals
from ctr.store import proc_starttime
from ctr.users import resolve_user
from ctr.vm import agent

BOOT_TIMEOUT = float(os.environ.get("CTR_VM_BOOT_TIMEOUT", "60"))
VM_FILES = ("console.log", "status", "ctl.sock", "agent.sock", "qmp.sock", "initrd",
            "qemu.log", "qemu.argv")

SIGKILL = signal.SIGKILL  # a default of exec's, beside the drivers' `signal` method


def run_dir(rec):
    return os.path.join(rec.dir, "vm")


class VmProcess:
    """QEMU, reaped by whoever started it; the exit status is the guest's."""

    def __init__(self, rec, pid, cgroup, net):
        self.rec = rec
        self.pid = pid
        self.starttime = proc_starttime(pid)
        self.cgroup = cgroup
        self.net = net
        self.master = None
        self.status = None  # QEMU's wait status, once reaped

    def send_signal(self, sig):
        send_signal(self.rec, self.pid, sig)

    def wait(self, stdin=0, stdout=1, stderr=2):
        del stdin, stdout, stderr  # QEMU holds the instance's stdio itself
        from ctr.vm.launch import read_status

        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)
        said = read_status(os.path.join(run_dir(self.rec), "status"))
        if "exit" in said:
            return said["exit"]
        code = os.waitstatus_to_exitcode(self.status)
        return 128 - code if code < 0 else EXIT_CTR


def send_signal(rec, pid, sig):
    """SIGKILL kills QEMU; any other signal goes to the command in the guest."""
    if sig == signal.SIGKILL:
        os.kill(pid, signal.SIGKILL)
        return
    os.kill(pid, 0)  # ProcessLookupError when the VM is gone
    agent.signal_command(run_dir(rec), sig)


def _user(user, root):
    """(uid, gid, home) for -u, read from the instance's root."""
    if user is None:
        return 0, 0, "/root"
    try:
        uid, gid, _, home = resolve_user(user, root)
    except InitFailure as err:
        raise StartError(str(err), EXIT_CTR) from None
    return uid, gid, home


def _launch(rec, lower, spec, argv, cg, stdio, tap_fd, pdeathsig, report_w):
    """The child: a mount namespace of its own with the instance's overlay,
    the cgroup, the initrd written, then QEMU."""
    from ctr.rootfs import mount_overlay
    from ctr.vm import initramfs

    try:
        os.setsid()
        cg.add(os.getpid())
        unshare(CLONE_NEWNS)
        SYSCALLS.mount("none", "/", None, MS_REC | MS_PRIVATE)
        for d in (rec.rootfs, rec.upper, rec.work):
            os.makedirs(d, exist_ok=True)
        mount_overlay(SYSCALLS, lower, rec.upper, rec.work, rec.rootfs)
        uid, gid, home = _user(spec.user, rec.rootfs)
        config = initramfs.command_config(uid, gid, spec.workdir, list(spec.command),
                                          env_home(list(spec.env), home))
        os.chdir(run_dir(rec))
        with open("qemu.argv", "w") as f:  # for people debugging, and benchmarks/vm.py
            json.dump(argv.args, f)
        initramfs.write_initrd("initrd", argv.base_initrd, config=config,
                               files=argv.guest_files)
        in_fd, out_fd, err_fd = stdio
        os.dup2(in_fd, 0)
        os.dup2(out_fd, 1)
        log = os.open("qemu.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        os.dup2(log, 2)
        if tap_fd is not None:
            os.set_inheritable(tap_fd, True)
        if spec.options.oom_score_adj is not None:  # QEMU's, who holds the guest's memory
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write(str(spec.options.oom_score_adj))
        if pdeathsig:
            import prctl

            prctl.set_pdeathsig(pdeathsig)
        reset_signals()
        os.execv(argv.args[0], argv.args)
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        report.write_failure(report_w, err, report.QEMU)
    os._exit(EXIT_CTR)


class _Argv:
    """What the child needs to write the initrd and exec QEMU."""

    def __init__(self, args, base_initrd, guest_files):
        self.args, self.base_initrd, self.guest_files = args, base_initrd, guest_files


class VmDriver:
    kind = "vm"

    def start(self, rec, lower, *, stdio=(None, None, None), tty=False, pdeathsig=None,
              gate=None, on_root=None):
        """The kernel and initrd found (before any resource: a bad kernel costs
        nothing), network plan and tap, cgroup, QEMU launched, the guest's
        agent awaited. Whatever fails, what was done before is undone. A VM
        has no gate (an OCI runtime's create runs containers only)."""
        if gate is not None or on_root is not None:
            raise StartError("a VM cannot wait at a gate before its command")
        if tty:
            raise StartError("-t is not supported for VMs yet")
        spec = rec.spec
        with common.Fds() as fds, Reverter() as revert:
            argv = self._prepare(rec, spec)
            plan = common.network_plan(revert, rec)
            tap_fd = fds.add(plan.attach_tap())  # QEMU holds its own copy
            if tap_fd is not None:
                from ctr.vm.launch import net_args

                argv.args += net_args(tap_fd, plan.info["mac"])
                argv.guest_files["net"] = (f"{plan.ip} {plan.info['prefixlen']} "
                                           f"{plan.info['gateway']}\n")
            argv.guest_files.update(self._etc_files(plan))
            cg = common.create_cgroup(revert, cgroups.Cgroup(spec.cgroup_parent, spec.id),
                                      cgroup_resources(spec))
            proc = self._spawn(revert, rec, lower, spec, argv, cg, stdio, tap_fd, pdeathsig)
            plan.bind(proc.pid, proc.starttime)
            self._await_boot(rec, proc)
            proc.net = plan.info
            revert.success()
        return proc

    def _prepare(self, rec, spec):
        from ctr.vm import initramfs, kernel, launch

        vm = spec.vm or {}
        accel, _ = launch.choose_accel(vm.get("accel"))
        kern = kernel.find(rec.store, vm.get("kernel"))
        if vm.get("initrd"):
            if not os.path.isfile(vm["initrd"]):
                raise StartError(f"--initrd {vm['initrd']}: no such file")
            base = os.path.abspath(vm["initrd"])
        else:
            base = initramfs.base(kern, kernel.cache_dir(rec.store))
        run = run_dir(rec)
        os.makedirs(run, exist_ok=True)
        for name in VM_FILES:
            try:
                os.unlink(os.path.join(run, name))
            except FileNotFoundError:
                pass
        args = launch.argv(kernel=kern.path, initrd="initrd", rootfs=rec.rootfs, accel=accel,
                           memory=vm["memory"],
                           cpus=launch.vcpus(spec.resources.get("cpus")),
                           tsc_khz=kernel.host_tsc_khz(),
                           kernel_args=vm.get("kernel_args") or (),
                           disks=vm.get("disks") or ())
        return _Argv(args, base, {"hostname": spec.hostname + "\n"})

    def _etc_files(self, plan):
        files = {}
        for src, dst, *_ in plan.binds:
            name = os.path.basename(dst)
            if name in ("hosts", "resolv.conf", "hostname"):
                with open(src) as f:
                    files[name] = f.read()
        return files

    def _spawn(self, revert, rec, lower, spec, argv, cg, stdio, tap_fd, pdeathsig):
        """QEMU's stdin is /dev/null (no -t for VMs yet); its stdout carries the
        guest's console: the caller's, or the log the monitor gave. Returns
        once QEMU was exec'd; the reverter kills it."""
        with common.Fds() as fds:
            null = fds.add(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
            stdio = (null, 1 if stdio[1] is None else stdio[1], 2)
            rep_r, rep_w = fds.pipe()
            pid = os.fork()
            if pid == 0:
                fds.close(rep_r)
                _launch(rec, lower, spec, argv, cg, stdio, tap_fd, pdeathsig, rep_w)
            revert.add(common.kill, pid)
            fds.close(rep_w)
            failure = report.read(rep_r)
        if failure is not None:
            raise failure.error()
        return VmProcess(rec, pid, cg, None)

    def _await_boot(self, rec, proc):
        """Until the guest's agent runs the command. A guest that powers off
        first (the command was not found...) or never gets there is an error."""
        from ctr.vm.launch import last_lines, read_status

        run = run_dir(rec)
        deadline = time.monotonic() + BOOT_TIMEOUT
        delay = 0.005
        while True:
            said = read_status(os.path.join(run, "status"))
            if "ready" in said and "exit" not in said:
                return
            done, status = os.waitpid(proc.pid, os.WNOHANG)
            if done or "exit" in said:
                if not done:
                    _, status = os.waitpid(proc.pid, 0)
                proc.status = status
                said = read_status(os.path.join(run, "status"))
                if "exit" in said:
                    if "ready" in said:
                        return  # it ran and already ended: wait() reads the status
                    raise StartError(f"starting {rec.name}: "
                                     f"{said['message'] or 'the command did not start'}",
                                     said["exit"])
                why = (last_lines(os.path.join(run, "qemu.log"))
                       or last_lines(os.path.join(run, "console.log"))
                       or f"QEMU exited with status {os.waitstatus_to_exitcode(status)}")
                raise StartError(f"the VM did not reach ctr's init: {why}")
            if time.monotonic() > deadline:
                why = last_lines(os.path.join(run, "console.log")) or "no console output"
                raise StartError(f"the VM did not reach ctr's init within "
                                 f"{BOOT_TIMEOUT:g} s (last console lines: {why})")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.01)

    # -- running ------------------------------------------------------------------

    def pause(self, rec, state, cgroup):
        """QMP stop: the vCPUs halt, QEMU's monitor stays responsive (a frozen
        cgroup would stop QEMU whole)."""
        del state, cgroup
        with agent.qmp(run_dir(rec)) as q:
            q.execute("stop")

    def resume(self, rec, state, cgroup):
        del state, cgroup
        with agent.qmp(run_dir(rec)) as q:
            q.execute("cont")

    def describe(self, rec, state):
        """What QEMU itself says of the running VM, for inspect."""
        from ctr.vm.qmp import QmpError

        try:
            with agent.qmp(run_dir(rec)) as q:
                status = q.execute("query-status")
                return {"qmp_status": status.get("status"), "run_dir": run_dir(rec)}
        except (QmpError, OSError):
            return {"run_dir": run_dir(rec)}

    def signal(self, rec, state, sig):
        send_signal(rec, state["pid"], sig)

    def exec(self, rec, state, *, command, env, workdir, user, tty=False,
             stdio=(None, None, None), pdeathsig=SIGKILL):
        del pdeathsig  # the agent's session ends with the guest, not with its starter
        if tty:
            raise StartError("-t is not supported for VMs yet")
        from ctr.vm.initramfs import command_config

        user = user if user is not None else rec.spec.user  # as a container's exec
        uid, gid, home = _user(user, f"/proc/{state['pid']}/root{rec.rootfs}")
        config = command_config(uid, gid, workdir, list(command),
                                env_home(list(env), home))
        try:
            sock = agent.connect(run_dir(rec), "agent.sock", timeout=None)
        except OSError as err:
            raise StartError(f"exec in {rec.name}: the VM's agent: {err.strerror}") from None
        return agent.AgentSession(sock, config, rec.name)


def cgroup_resources(spec):
    """A VM's memory is its guest RAM (QEMU needs ~200 MiB beyond it): the
    cgroup gets the other limits."""
    return {k: v for k, v in spec.resources.items() if k not in ("memory", "memory_swap")}
