"""docker's run flags beyond the basics, as a user checks them: /etc/hosts and
/etc/resolv.conf lines, a device node that works (and one the device
controller refuses), /dev/shm's size, sysctls inside (the host's unchanged),
shared pid, ipc and uts namespaces, supplementary groups, the cidfile,
oom_score_adj, and the cgroup files of the new limits. Run inside a network
namespace of the suite's own (bridge, host-gateway)."""

import os
import subprocess

import pytest
from helpers import CGROUP2_ONLY, assert_refused, wait_for

DEBIAN_IMAGE = "/var/lib/ctr/images/debian"  # built by `make dev`; it has ipcmk and ipcs


def refused_beside(ctr, r, message, others):
    """assert_refused's contract where other instances stay: one line, 125, and
    no record but theirs."""
    assert r.returncode == 125, r.stderr
    assert r.stderr.startswith("ctr: error: ") and message in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert sorted(os.listdir(ctr.path("instances"))) == sorted(others)


def lines(text):
    return [ln.split() for ln in text.splitlines() if ln and not ln.startswith("#")]


def cgroup_file(ctr, name, controller, filename):
    paths = ctr.state(name)["cgroups"]
    path = paths[0] if CGROUP2_ONLY else next(
        p for p in paths if f"/{controller}/" in p
        or p.rstrip("/").split("/")[-2:-1] == [controller])
    with open(os.path.join(path, filename)) as f:
        return f.read().strip()


# -- /etc/hosts, /etc/resolv.conf -----------------------------------------------------------

def test_add_host_and_dns_are_in_the_etc_files(ctr):
    r = ctr("run", "--rm", "--add-host", "db.local:10.1.2.3", "--add-host", "v6:fd00::1",
            "--add-host", "gw:host-gateway", "--dns", "9.9.9.9", "--dns", "1.1.1.1",
            "--dns-search", "example.com", "--dns-option", "ndots:2", "busybox",
            "sh", "-c", "cat /etc/hosts; echo ---; cat /etc/resolv.conf", check=True)
    hosts, resolv = r.stdout.split("---\n")
    assert ["10.1.2.3", "db.local"] in lines(hosts)
    assert ["fd00::1", "v6"] in lines(hosts)
    assert ["10.88.0.1", "gw"] in lines(hosts)  # the bridge's gateway
    assert lines(resolv) == [["nameserver", "9.9.9.9"], ["nameserver", "1.1.1.1"],
                             ["search", "example.com"], ["options", "ndots:2"]]


def test_add_host_lines_stay_when_peers_come_and_go(ctr):
    ctr("run", "-d", "--name", "first", "--add-host", "api:10.9.9.9", "busybox",
        "sleep", "100", check=True)
    ctr("run", "-d", "--name", "second", "busybox", "sleep", "100", check=True)
    hosts = ctr("exec", "first", "cat", "/etc/hosts", check=True).stdout
    assert ["10.9.9.9", "api"] in lines(hosts)
    assert any(entry[1:] == ["second"] or "second" in entry[1:] for entry in lines(hosts))
    ctr("rm", "-f", "first", "second", check=True)


def test_dns_with_the_hosts_network_leaves_the_hosts_files_alone(ctr):
    with open("/etc/resolv.conf") as f:
        before = f.read()
    r = ctr("run", "--rm", "--network", "host", "--dns", "192.0.2.53", "--add-host",
            "h:192.0.2.1", "busybox", "sh", "-c", "cat /etc/resolv.conf /etc/hosts",
            check=True)
    assert ["nameserver", "192.0.2.53"] in lines(r.stdout)
    assert ["192.0.2.1", "h"] in lines(r.stdout)
    with open("/etc/resolv.conf") as f:
        assert f.read() == before


# -- devices, /dev/shm -------------------------------------------------------------------------

def test_device_node_works_and_the_controller_enforces_its_access(ctr):
    r = ctr("run", "--rm", "--network", "none", "--device", "/dev/zero:/dev/myzero",
            "busybox", "sh", "-c",
            "head -c 4 /dev/myzero | od -An -tx1; echo data > /dev/myzero && echo written",
            check=True)
    assert r.stdout.split() == ["00", "00", "00", "00", "written"]
    # read only: it opens for reading; for writing the device controller says no
    r = ctr("run", "--rm", "--network", "none", "--device", "/dev/fuse:/dev/fuse:r",
            "busybox", "sh", "-c", "exec 3</dev/fuse && echo opened; exec 4>/dev/fuse")
    assert "opened" in r.stdout
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    # a device nobody allowed: the node can be made (as in docker) but not opened
    r = ctr("run", "--rm", "--network", "none", "busybox", "sh", "-c",
            "mknod /dev/f c 10 229 && exec 3</dev/f")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr


def test_shm_size_is_what_df_shows(ctr):
    r = ctr("run", "--rm", "--network", "none", "--shm-size", "16m", "busybox",
            "df", "-k", "/dev/shm", check=True)
    assert lines(r.stdout)[1][1] == "16384"
    r = ctr("run", "--rm", "--network", "none", "busybox", "df", "-k", "/dev/shm", check=True)
    assert lines(r.stdout)[1][1] == "65536"  # docker's 64m


# -- sysctls -------------------------------------------------------------------------------------

def test_sysctls_are_the_instances_own(ctr):
    host = {k: open(f"/proc/sys/{k.replace('.', '/')}").read() for k in (
        "net.ipv4.ip_forward", "kernel.shmmax", "fs.mqueue.msg_max", "kernel.domainname")}
    r = ctr("run", "--rm", "--network", "none", "--sysctl", "net.ipv4.ip_forward=1",
            "--sysctl", "kernel.shmmax=123456", "--sysctl", "fs/mqueue/msg_max=20",
            "--sysctl", "kernel.domainname=dom.example", "busybox", "cat",
            "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmax",
            "/proc/sys/fs/mqueue/msg_max", "/proc/sys/kernel/domainname", check=True)
    assert r.stdout.split() == ["1", "123456", "20", "dom.example"]
    for key, value in host.items():
        assert open(f"/proc/sys/{key.replace('.', '/')}").read() == value


@pytest.mark.parametrize("args, message", [
    (["--sysctl", "kernel.pid_max=100000"], "would change the host's"),
    (["--sysctl", "vm.swappiness=10"], "would change the host's"),
    (["--sysctl", "kernel.hostname=x"], "set the hostname with --hostname"),
    (["--network", "host", "--sysctl", "net.ipv4.ip_forward=1"], "--network host"),
    (["--ipc", "host", "--sysctl", "kernel.shmmax=1"], "--ipc host"),
    (["--uts", "host", "--sysctl", "kernel.domainname=x"], "--uts host"),
    (["--sysctl", "nokey"], "expected KEY=VALUE"),
])
def test_sysctls_outside_the_instances_namespaces_are_refused(ctr, args, message):
    r = ctr("run", "--rm", *args, "busybox", "true")
    assert_refused(ctr, r, message)


# -- pid, ipc, uts -------------------------------------------------------------------------------

def ns_link(kind, pid="self"):
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def test_pid_host_sees_the_hosts_processes(ctr):
    r = ctr("run", "--rm", "--network", "none", "--pid", "host", "busybox", "sh", "-c",
            f"readlink /proc/self/ns/pid; test -d /proc/{os.getpid()} && echo sees-pytest",
            check=True)
    assert r.stdout.split() == [ns_link("pid"), "sees-pytest"]


def test_pid_container_sees_that_instances_processes(ctr):
    ctr("run", "-d", "--name", "target", "--network", "none", "busybox", "sleep", "100",
        check=True)
    r = ctr("run", "--rm", "--network", "none", "--pid", "container:target", "busybox",
            "ps", "-o", "pid,args", check=True)
    procs = [ln for ln in lines(r.stdout)[1:]]
    assert ["1", "sleep", "100"] in procs  # target's init is PID 1 here
    # ctr exec into the joiner lands in the same namespace
    ctr("run", "-d", "--name", "joiner", "--network", "none", "--pid", "container:target",
        "busybox", "sleep", "100", check=True)
    r = ctr("exec", "joiner", "ps", "-o", "args", check=True)
    assert "sleep 100" in r.stdout and r.stdout.count("sleep 100") == 2
    ctr("rm", "-f", "joiner", "target", check=True)
    r = ctr("run", "--rm", "--pid", "container:target", "busybox", "true")
    assert_refused(ctr, r, "--pid container:target: no such instance")


@pytest.fixture
def dctr(ctr):
    assert os.path.isfile(os.path.join(DEBIAN_IMAGE, "image.json")), \
        "no debian image: run `make dev`"
    subprocess.run(["cp", "-al", DEBIAN_IMAGE, ctr.path("images", "debian")], check=True)
    return ctr


def test_ipc_shareable_is_joined_with_its_sysv_segments(dctr):
    ctr = dctr
    ctr("run", "-d", "--name", "donor", "--network", "none", "--ipc", "shareable", "debian",
        "sh", "-c", "ipcmk -M 4096 && echo posix > /dev/shm/seg && exec sleep 100",
        check=True)
    ctr("run", "-d", "--name", "private", "--network", "none", "debian", "sleep", "100",
        check=True)

    def segments(*args):
        r = ctr("run", "--rm", "--network", "none", *args, "debian", "ipcs", "-m", check=True)
        return [ln for ln in lines(r.stdout) if ln[0].startswith("0x")]

    assert wait_for(lambda: len(segments("--ipc", "container:donor")) == 1)
    assert segments("--ipc", "container:donor")[0][4] == "4096"
    assert segments() == []  # a namespace of its own sees none
    # and its /dev/shm, as docker shares it (POSIX shared memory lives there)
    r = ctr("run", "--rm", "--network", "none", "--ipc", "container:donor", "debian", "sh",
            "-c", "cat /dev/shm/seg && echo joiner > /dev/shm/back", check=True)
    assert r.stdout.strip() == "posix"
    assert ctr("exec", "donor", "cat", "/dev/shm/back", check=True).stdout.strip() == "joiner"
    r = ctr("run", "--rm", "--ipc", "container:private", "debian", "true")
    refused_beside(ctr, r, "not shareable", ["donor", "private"])
    ctr("rm", "-f", "donor", "private", check=True)


def test_ipc_and_uts_host_are_the_hosts(ctr):
    r = ctr("run", "--rm", "--network", "none", "--ipc", "host", "--uts", "host", "busybox",
            "sh", "-c", "readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts; hostname; "
            "cat /etc/hostname", check=True)
    name = os.uname().nodename
    assert r.stdout.split() == [ns_link("ipc"), ns_link("uts"), name, name]
    r = ctr("run", "--rm", "--uts", "host", "--hostname", "x", "busybox", "true")
    assert_refused(ctr, r, "--hostname and --uts host conflict")


# -- the process: groups, oom_score_adj; the cidfile --------------------------------------------

def test_group_add_by_name_and_number(ctr):
    r = ctr("run", "--rm", "--network", "none", "-u", "nobody", "--group-add", "daemon",
            "--group-add", "1234", "busybox", "id", "-G", check=True)
    assert sorted(r.stdout.split()) == ["1", "1234", "65534"]
    ctr("run", "-d", "--name", "g", "--network", "none", "--group-add", "www-data",
        "busybox", "sleep", "100", check=True)
    assert "33" in ctr("exec", "g", "id", "-G", check=True).stdout.split()  # exec too
    ctr("rm", "-f", "g", check=True)
    r = ctr("run", "--rm", "--network", "none", "--group-add", "nosuch", "busybox", "true")
    assert_refused(ctr, r, "--group-add nosuch: no such group")


def test_oom_score_adj(ctr):
    # (a negative one needs CAP_SYS_RESOURCE, which the build hosts' root lacks)
    r = ctr("run", "--rm", "--network", "none", "--oom-score-adj", "500", "busybox",
            "cat", "/proc/self/oom_score_adj", check=True)
    assert r.stdout.strip() == "500"


def test_cidfile_has_the_id_and_is_never_overwritten(ctr, tmp_path):
    cidfile = tmp_path / "cid"
    ctr("create", "--name", "c1", "--cidfile", str(cidfile), "busybox", "true", check=True)
    assert cidfile.read_text() == ctr.inspect("c1")["Id"]
    assert ctr.inspect("c1")["HostConfig"]["ContainerIDFile"] == str(cidfile)
    ctr("rm", "c1", check=True)
    r = ctr("run", "--rm", "--cidfile", str(cidfile), "busybox", "true")
    assert_refused(ctr, r, "the file exists")
    # a run that never started leaves no cidfile either
    cidfile.unlink()
    r = ctr("run", "--cidfile", str(cidfile), "--group-add", "nosuch", "busybox", "true")
    assert_refused(ctr, r, "no such group")
    assert not cidfile.exists()


# -- limits --------------------------------------------------------------------------------------

def test_memory_reservation_and_cpu_period_quota_in_the_cgroup_files(ctr):
    ctr("run", "-d", "--name", "lim", "--network", "none", "--memory-reservation", "32m",
        "--cpu-period", "50000", "--cpu-quota", "25000", "busybox", "sleep", "100",
        check=True)
    if CGROUP2_ONLY:
        assert cgroup_file(ctr, "lim", "memory", "memory.low") == str(32 << 20)
        assert cgroup_file(ctr, "lim", "cpu", "cpu.max") == "25000 50000"
    else:
        assert cgroup_file(ctr, "lim", "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
        assert cgroup_file(ctr, "lim", "cpu", "cpu.cfs_period_us") == "50000"
        assert cgroup_file(ctr, "lim", "cpu", "cpu.cfs_quota_us") == "25000"
    hc = ctr.inspect("lim")["HostConfig"]
    assert (hc["MemoryReservation"], hc["CpuPeriod"], hc["CpuQuota"]) == (32 << 20, 50000,
                                                                          25000)
    # update: --cpus replaces period and quota
    ctr("update", "--cpus", "1", "lim", check=True)
    if CGROUP2_ONLY:
        assert cgroup_file(ctr, "lim", "cpu", "cpu.max") == "100000 100000"
    else:
        assert cgroup_file(ctr, "lim", "cpu", "cpu.cfs_period_us") == "100000"
        assert cgroup_file(ctr, "lim", "cpu", "cpu.cfs_quota_us") == "100000"
    ctr("rm", "-f", "lim", check=True)


# -- inspect, bad values ------------------------------------------------------------------------

def test_inspect_shows_dockers_names(ctr):
    ctr("create", "--name", "i", "--add-host", "a:10.0.0.1", "--dns", "10.0.0.53",
        "--device", "/dev/zero:/dev/z:rw", "--shm-size", "8m", "--sysctl",
        "net.core.somaxconn=1024", "--ipc", "shareable", "--group-add", "daemon",
        "--oom-score-adj", "100", "busybox", "true", check=True)
    hc = ctr.inspect("i")["HostConfig"]
    assert hc["ExtraHosts"] == ["a:10.0.0.1"] and hc["Dns"] == ["10.0.0.53"]
    assert hc["Devices"] == [{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/z",
                              "CgroupPermissions": "rw"}]
    assert hc["ShmSize"] == 8 << 20 and hc["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert hc["IpcMode"] == "shareable" and hc["PidMode"] == "" and hc["UTSMode"] == ""
    assert hc["GroupAdd"] == ["daemon"] and hc["OomScoreAdj"] == 100
    r = ctr("inspect", "-f", "{{.HostConfig.ShmSize}} {{json .HostConfig.Dns}}", "i",
            check=True)
    assert r.stdout.strip() == f'{8 << 20} ["10.0.0.53"]'


@pytest.mark.parametrize("args, message", [
    (["--add-host", "nocolon"], "expected NAME:IP"),
    (["--add-host", "h:999.1.1.1"], "is not an IP address"),
    (["--dns", "resolver"], "expected an IP address"),
    (["--dns-search", "a b"], "without spaces"),
    (["--device", "/dev/nonexistent"], "No such file"),
    (["--device", "/etc/passwd"], "is not a device node"),
    (["--device", "/dev/zero:/tmp/z"], "must be under /dev"),
    (["--device", "/dev/zero:/dev/z:rwx"], "expected HOST[:CONTAINER][:rwm]"),
    (["--shm-size", "lots"], "invalid --shm-size"),
    (["--shm-size", "8m", "--ipc", "host"], "--shm-size needs an IPC namespace"),
    (["--pid", "other"], "invalid --pid"),
    (["--ipc", "nope"], "invalid --ipc"),
    (["--uts", "private"], "invalid --uts"),
    (["--group-add", "a b"], "invalid --group-add"),
    (["--oom-score-adj", "1001"], "between -1000 and 1000"),
    (["--oom-score-adj", "x"], "expected an integer"),
    (["--memory-reservation", "1k"], "the minimum is 6m"),
    (["-m", "64m", "--memory-reservation", "128m"], "at most --memory"),
    (["--cpus", "1", "--cpu-quota", "50000"], "not both"),
    (["--cpu-period", "10"], "between 1000 and 1000000"),
    (["--cpu-quota", "10"], "--cpu-quota"),
    (["--network", "container:x", "--dns", "1.1.1.1"], "cannot be used with --network"),
    (["--init", "--pid", "host"], "--init needs a pid namespace"),
    (["--vm", "--device", "/dev/zero"], "for containers only"),
    (["--vm", "--sysctl", "net.ipv4.ip_forward=1"], "for containers only"),
    (["--vm", "--memory-reservation", "64m"], "a VM's memory"),
])
def test_bad_values_are_refused_and_leave_nothing(ctr, args, message):
    r = ctr("run", "--rm", *args, "busybox", "true")
    assert_refused(ctr, r, message)


def test_a_vm_gets_the_etc_files_lines_and_qemu_the_oom_score(ctr, vm_kernels):
    os.symlink(vm_kernels, ctr.path("kernels"))
    ctr("run", "-d", "--name", "v", "--vm", "--network", "none", "--add-host",
        "a:192.0.2.1", "--dns", "192.0.2.53", "--oom-score-adj", "300", "busybox", "sh", "-c",
        "cat /etc/hosts /etc/resolv.conf; exec sleep 100", timeout=120, check=True)
    assert wait_for(lambda: "nameserver" in ctr("logs", "v").stdout, timeout=60)
    out = lines(ctr("logs", "v").stdout)
    assert ["192.0.2.1", "a"] in out and ["nameserver", "192.0.2.53"] in out
    with open(f"/proc/{ctr.state('v')['pid']}/oom_score_adj") as f:
        assert f.read().strip() == "300"  # QEMU's, which holds the guest's memory
    ctr("rm", "-f", "v", check=True)
