"""Building an image from a recipe: `NAME/build.sh ROOTFS`, run sandboxed.

ctr's own recipes (busybox, debian) are the repo's top-level images/ folder,
installed as the package ctr.recipes; CTR_RECIPES names a folder of one's own.
The store (ctr.images.store) calls run_recipe and commits what it made.
"""

import os


def recipes_dir():
    """Where `ctr image build NAME` finds NAME/build.sh: ctr's own recipes, or
    the folder CTR_RECIPES names (recipes of one's own)."""
    if os.environ.get("CTR_RECIPES"):
        return os.environ["CTR_RECIPES"]
    import ctr.recipes

    return os.path.dirname(ctr.recipes.__file__)


def recipe_path(name):
    path = os.path.join(recipes_dir(), name, "build.sh")
    return path if os.path.isfile(path) else None


RECIPE_SANDBOX = ("unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                  "--kill-child=SIGKILL")


def run_recipe(recipe, rootfs, progress=None):
    """Run a recipe: `sh RECIPE ROOTFS`, in mount and pid namespaces of its own.
    Whatever the recipe mounts (debootstrap mounts proc, sys and dev in its
    target) dies with the namespaces, and every process of the build with ctr:
    a failed, interrupted or killed build leaves no mount and no process.
    Lines starting with "==> " are passed to `progress`. Returns (exit status,
    the last lines of output)."""
    import collections
    import signal
    import subprocess

    def die_with_parent():
        import prctl

        prctl.set_pdeathsig(signal.SIGKILL)

    tail = collections.deque(maxlen=20)
    proc = subprocess.Popen([*RECIPE_SANDBOX, "sh", recipe, rootfs], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=die_with_parent)
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith("==> "):
                if progress:
                    progress(line[4:])
            elif line:
                tail.append(line)
        return proc.wait(), list(tail)
    finally:
        if proc.poll() is None:  # interrupted: the whole build goes, then its files
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        proc.stdout.close()
