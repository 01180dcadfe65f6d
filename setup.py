# The C helper and the VM's guest agent are built here: pyproject.toml cannot
# declare extension modules, nor a static executable.
import os
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExtAndAgent(build_ext):
    """Also build three static programs: ctr-agent, PID 1 of a ctr VM (the guest
    has no libc), ctr-exec, the last exec of a container's process (run from
    a sealed memfd, see execstub.c), and ctr-monitor, what watches a detached
    container while it runs (see monitor.c)."""

    def run(self):
        super().run()
        target = self.build_lib if not self.inplace else "."
        for out, source in (("vm/ctr-agent", "vm/agent.c"),
                            ("native/ctr-exec", "native/execstub.c"),
                            ("native/ctr-monitor", "native/monitor.c")):
            out = os.path.join(target, "ctr", out)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            subprocess.check_call(["gcc", "-static", "-O2", "-s", "-Wall", "-Werror", "-o", out,
                                   os.path.join("ctr", source)])


setup(
    packages=[
        "ctr", "ctr.bench", "ctr.cli", "ctr.cgroups", "ctr.drivers", "ctr.images",
        "ctr.namespaces", "ctr.native", "ctr.net", "ctr.oci", "ctr.recipes", "ctr.rootfs",
        "ctr.seccomp",
        "ctr.spec", "ctr.vm",
    ],
    ext_modules=[
        Extension(
            "ctr.native._native",
            sources=["ctr/native/_native.c"],
            extra_compile_args=["-O2", "-Wall", "-Werror"],
            libraries=["seccomp"],
        )
    ],
    cmdclass={"build_ext": BuildExtAndAgent},
)
