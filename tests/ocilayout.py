"""OCI image layouts the tests write by hand (python tarfile + JSON), and a real
registry (the distribution's docker-registry) to push them to with skopeo."""

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _blob(layout, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest[7:])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": digest, "size": len(data)}


def tar_of(members):
    """A tar stream from [(name, kind, arg)]: kind file (arg: bytes), dir, symlink
    (arg: target), hardlink (arg: target), whiteout (name: the hidden path),
    opaque (name: the directory)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, arg in members:
            if kind == "whiteout":
                head, _, leaf = name.rpartition("/")
                name, kind, arg = (f"{head}/" if head else "") + ".wh." + leaf, "file", b""
            elif kind == "opaque":
                name, kind, arg = f"{name}/.wh..wh..opq", "file", b""
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "file":
                info.size, info.mode = len(arg), 0o644
                t.addfile(info, io.BytesIO(arg))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, arg
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, arg
            t.addfile(info)
    return buf.getvalue()


def tar_of_tree(root):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.add(root, arcname=".", filter=lambda i: (setattr(i, "mtime", 1700000000), i)[1])
    return buf.getvalue()


def image_manifest(layout, layers, *, arch="amd64", cmd=("sh",), diff_ids=None, env=()):
    """Blobs of one image of `layers` (uncompressed tar bytes, bottom first);
    returns its manifest's descriptor."""
    descs = [_blob(layout, gzip.compress(t, mtime=0)) | {"mediaType": OCI_LAYER}
             for t in layers]
    config = {
        "architecture": arch, "os": "linux", "created": "2026-01-02T03:04:05Z",
        "config": {"Cmd": list(cmd), "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", *env],
                   "Labels": {"test": "yes"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or [
            "sha256:" + hashlib.sha256(t).hexdigest() for t in layers]},
    }
    cdesc = _blob(layout, json.dumps(config).encode()) | {"mediaType": OCI_CONFIG}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc,
                "layers": descs}
    return _blob(layout, json.dumps(manifest).encode()) | {
        "mediaType": OCI_MANIFEST, "platform": {"architecture": arch, "os": "linux"}}


def write_layout(layout, manifests, *, as_index=False):
    """index.json of a layout: the manifests themselves, or one index of them
    (a multi-platform image) when `as_index`."""
    os.makedirs(layout, exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    if as_index:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        manifests = [_blob(layout, json.dumps(index).encode()) | {"mediaType": OCI_INDEX}]
    manifests = [dict(m, annotations={"org.opencontainers.image.ref.name": "image"})
                 for m in manifests]
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": manifests}, f)
    return layout


def push(layout, dest, multi=False):
    """skopeo copy the layout to docker://DEST on the plain-HTTP test registry;
    returns the manifest digest the registry has."""
    argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
    if multi:
        argv.append("--all")
    subprocess.run([*argv, f"oci:{layout}:image", f"docker://{dest}"], check=True,
                   capture_output=True, timeout=120)
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                          f"docker://{dest}"], check=True, capture_output=True, timeout=60)
    return "sha256:" + hashlib.sha256(out.stdout).hexdigest()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """docker-registry serving a private folder on 127.0.0.1:PORT until stop()."""

    def __init__(self, workdir):
        self.dir = workdir
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        os.makedirs(os.path.join(workdir, "storage"), exist_ok=True)
        cfg = os.path.join(workdir, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {workdir}/storage\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: {self.addr}\n")
        self.log = open(os.path.join(workdir, "log"), "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
