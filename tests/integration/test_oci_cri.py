"""A Kubernetes pod through containerd's CRI plugin, with ctr-oci as the runtime
handler's BinaryName: what a kubelet asks (RunPodSandbox with the node's network,
CreateContainer, StartContainer, ExecSync, ContainerStatus, StopPodSandbox,
RemovePodSandbox), spoken by a small gRPC client (tests/cri_api.proto). The
pause and busybox images are imported into containerd from archives the test
makes. containerd (the distribution's 1.6) runs with a private root, state,
sockets and config; its CNI is never configured (a host-network pod needs none)."""

import importlib
import os
import shutil
import subprocess
import sys
import time

import pytest
from helpers import wait_for
from oci_helpers import CGROUP_PARENT, OCI, make_rootfs, mounts_of, remove_cgroup_tree
from ocilayout import image_manifest, tar_of_tree, write_layout

grpc = pytest.importorskip("grpc", reason="grpcio is a dev dependency (make dev)")
CTR_CLI = "/usr/bin/ctr"  # containerd's own CLI
pytestmark = pytest.mark.skipif(not (shutil.which("containerd") and os.path.exists(CTR_CLI)),
                                reason="containerd is not installed (make dev installs it)")
HOST_DIRS = ("/run/containerd/s", "/run/containerd/fifo", "/run/containerd")
BUSYBOX_IMAGE = "localhost/ctr-test-busybox:1"
PAUSE_IMAGE = "localhost/ctr-test-pause:1"
PROTO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     "cri_api.proto")


def _compile(out):
    """cri_api_pb2 from tests/cri_api.proto, generated into `out`."""
    from grpc_tools import protoc

    inc = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{os.path.dirname(PROTO)}", f"-I{inc}",
                      f"--python_out={out}", PROTO])
    assert rc == 0, "protoc failed on tests/cri_api.proto"
    sys.path.insert(0, out)
    try:
        return importlib.import_module("cri_api_pb2")
    finally:
        sys.path.remove(out)


class Cri:
    """runtime.v1.RuntimeService over containerd's socket."""

    def __init__(self, sock, api):
        self.api = api
        self.channel = grpc.insecure_channel(f"unix://{sock}")

    def __call__(self, method, **fields):
        request = getattr(self.api, f"{method}Request")(**fields)
        response = getattr(self.api, f"{method}Response")
        call = self.channel.unary_unary(f"/runtime.v1.RuntimeService/{method}",
                                        request_serializer=request.SerializeToString,
                                        response_deserializer=response.FromString)
        return call(request, timeout=120)


def _import_image(ctd, base, name, cmd):
    layout = os.path.join(base, "layout-" + name.rsplit("/", 1)[-1].replace(":", "-"))
    rootfs = make_rootfs(os.path.join(base, "img-rootfs"))
    write_layout(layout, [image_manifest(layout, [tar_of_tree(rootfs)], cmd=cmd)])
    archive = layout + ".tar"
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout}:image",
                    f"docker-archive:{archive}:{name}"], check=True, capture_output=True,
                   timeout=120)
    ctd("-n", "k8s.io", "images", "import", archive, check=True)


@pytest.fixture(scope="module")
def cri(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("cri"))
    api = _compile(base)
    had = {d for d in HOST_DIRS if os.path.exists(d)}
    sock = f"{base}/ctd.sock"
    plugin = 'plugins."io.containerd.grpc.v1.cri"'
    # restrict_oom_score_adj: these hosts' root lacks CAP_SYS_RESOURCE, so no process
    # may go below its own score (the pause's -998 fails under runc as well).
    with open(f"{base}/config.toml", "w") as f:
        f.write(f'''version = 2
root = "{base}/root"
state = "{base}/state"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{base}/ctd-ttrpc.sock"
[{plugin}]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  restrict_oom_score_adj = true
[{plugin}.containerd]
  snapshotter = "native"
  default_runtime_name = "ctr-oci"
[{plugin}.containerd.runtimes.ctr-oci]
  runtime_type = "io.containerd.runc.v2"
[{plugin}.containerd.runtimes.ctr-oci.options]
  BinaryName = "{OCI}"
  Root = "{base}/runc"
[{plugin}.cni]
  bin_dir = "{base}/cni/bin"
  conf_dir = "{base}/cni/conf"
''')
    log = open(f"{base}/containerd.log", "w")
    daemon = subprocess.Popen(["containerd", "--config", f"{base}/config.toml"], stdout=log,
                              stderr=subprocess.STDOUT)

    def ctd(*args, check=False):
        r = subprocess.run([CTR_CLI, "--address", sock, *args], capture_output=True, text=True,
                           timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} -> {r.returncode}: {r.stderr}")
        return r

    try:
        assert wait_for(lambda: os.path.exists(sock), timeout=20), open(
            f"{base}/containerd.log").read()[-2000:]
        ctd("version", check=True)
        _import_image(ctd, base, PAUSE_IMAGE, ("/bin/sleep", "1000000"))
        _import_image(ctd, base, BUSYBOX_IMAGE, ("sh",))
        c = Cri(sock, api)
        c.base, c.ctd = base, ctd
        yield c
    finally:
        c_list = ctd("-n", "k8s.io", "task", "ls", "-q").stdout.split()
        for cid in c_list:
            ctd("-n", "k8s.io", "task", "kill", "-s", "KILL", cid)
        time.sleep(0.5 if c_list else 0)
        for cid in c_list:
            ctd("-n", "k8s.io", "task", "delete", "-f", cid)
        daemon.terminate()
        daemon.wait(30)
        log.close()
        left = mounts_of(base)
        runc_root = f"{base}/runc/k8s.io"
        left += os.listdir(runc_root) if os.path.isdir(runc_root) else []
        remove_cgroup_tree(CGROUP_PARENT)
        for m in reversed(mounts_of(base)):  # what a failed test left: not the host's
            subprocess.run(["umount", "-l", m.split()[1]], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        for d in HOST_DIRS:
            if d not in had:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        assert not left, f"the pod left things behind: {left}"


def _sandbox_config(api, cri, name):
    ns = api.NamespaceOption(network=api.NODE, pid=api.CONTAINER, ipc=api.POD)
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default"),
        log_directory=f"{cri.base}/logs/{name}",
        linux=api.LinuxPodSandboxConfig(
            cgroup_parent=f"{CGROUP_PARENT}/{name}",
            security_context=api.LinuxSandboxSecurityContext(namespace_options=ns)))


def _oci_state(cri, cid):
    return subprocess.run([OCI, "--root", f"{cri.base}/runc/k8s.io", "state", cid],
                          capture_output=True, text=True)


def test_a_pod_runs_execs_and_goes(cri):
    api = cri.api
    sandbox = _sandbox_config(api, cri, "pod1")
    pod = cri("RunPodSandbox", config=sandbox).pod_sandbox_id
    assert '"status": "running"' in _oci_state(cri, pod).stdout  # the pause: ctr-oci's
    config = api.ContainerConfig(
        metadata=api.ContainerMetadata(name="app"), image=api.ImageSpec(image=BUSYBOX_IMAGE),
        command=["sh", "-c"], args=["echo hello from the pod; exec sleep 1000"],
        envs=[api.KeyValue(key="GREETING", value="hi")], log_path="app.log",
        linux=api.LinuxContainerConfig(resources=api.LinuxContainerResources(
            memory_limit_in_bytes=64 << 20)))
    cid = cri("CreateContainer", pod_sandbox_id=pod, config=config,
              sandbox_config=sandbox).container_id
    assert cri("ContainerStatus", container_id=cid).status.state == api.CONTAINER_CREATED
    cri("StartContainer", container_id=cid)
    assert cri("ContainerStatus", container_id=cid).status.state == api.CONTAINER_RUNNING
    state = _oci_state(cri, cid)
    assert state.returncode == 0 and '"status": "running"' in state.stdout, state
    r = cri("ExecSync", container_id=cid, timeout=30,
            cmd=["sh", "-c", "echo $GREETING; cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                 "2>/dev/null || echo no-view; ps -o comm | grep -c pause; exit 3"])
    out = r.stdout.decode().split()
    assert r.exit_code == 3 and out[0] == "hi", r
    assert out[-1] == "0"  # pid CONTAINER: the pause's process is not seen
    log = os.path.join(sandbox.log_directory, "app.log")
    assert wait_for(lambda: os.path.exists(log) and "hello from the pod" in open(log).read())
    cri("StopPodSandbox", pod_sandbox_id=pod)
    status = cri("ContainerStatus", container_id=cid).status
    assert status.state == api.CONTAINER_EXITED and status.finished_at > 0
    cri("RemovePodSandbox", pod_sandbox_id=pod)
    assert _oci_state(cri, cid).returncode != 0  # gone from ctr-oci's state root
    assert _oci_state(cri, pod).returncode != 0
    left = os.listdir(f"{cri.base}/runc/k8s.io")
    assert left == [], left


def test_a_failing_container_s_error_reaches_the_caller(cri):
    api = cri.api
    sandbox = _sandbox_config(api, cri, "pod2")
    pod = cri("RunPodSandbox", config=sandbox).pod_sandbox_id
    config = api.ContainerConfig(
        metadata=api.ContainerMetadata(name="bad"), image=api.ImageSpec(image=BUSYBOX_IMAGE),
        command=["no-such-command"], log_path="bad.log")
    cid = cri("CreateContainer", pod_sandbox_id=pod, config=config,
              sandbox_config=sandbox).container_id
    with pytest.raises(grpc.RpcError) as err:
        cri("StartContainer", container_id=cid)
    assert "no-such-command" in err.value.details()
    cri("StopPodSandbox", pod_sandbox_id=pod)
    cri("RemovePodSandbox", pod_sandbox_id=pod)
    assert os.listdir(f"{cri.base}/runc/k8s.io") == []
