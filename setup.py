# The C helper and the VM's guest agent are built here: pyproject.toml cannot
# declare extension modules, nor a static executable.
import os
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExtAndAgent(build_ext):
    """Also build ctr-agent, PID 1 of a ctr VM: static, as the guest has no libc."""

    def run(self):
        super().run()
        target = self.build_lib if not self.inplace else "."
        out = os.path.join(target, "ctr", "vm", "ctr-agent")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.check_call(["gcc", "-static", "-O2", "-Wall", "-Werror", "-o", out,
                               os.path.join("ctr", "vm", "agent.c")])


setup(
    packages=[
        "ctr", "ctr.bench", "ctr.cli", "ctr.cgroups", "ctr.drivers", "ctr.namespaces",
        "ctr.native", "ctr.net", "ctr.rootfs", "ctr.images", "ctr.vm",
    ],
    ext_modules=[
        Extension(
            "ctr.native._native",
            sources=["ctr/native/_native.c"],
            extra_compile_args=["-O2", "-Wall", "-Werror"],
        )
    ],
    cmdclass={"build_ext": BuildExtAndAgent},
)
