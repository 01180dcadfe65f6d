# The C helper is built here: pyproject.toml cannot declare extension modules.
from setuptools import Extension, setup

setup(
    packages=[
        "ctr", "ctr.cli", "ctr.cgroups", "ctr.drivers", "ctr.namespaces",
        "ctr.native", "ctr.net", "ctr.rootfs", "ctr.images",
    ],
    ext_modules=[
        Extension(
            "ctr.native._native",
            sources=["ctr/native/_native.c"],
            extra_compile_args=["-O2", "-Wall", "-Werror"],
        )
    ],
)
