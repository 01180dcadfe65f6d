"""The import graph of ctr/: one way only. Every import counts, those inside
functions too (a lazy import is still a dependency)."""

import ast
import os

import ctr

PKG = os.path.dirname(ctr.__file__)


def _modules():
    mods = {}
    for top, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(top, f)
                rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
                mods[rel.removesuffix(".__init__")] = path
    return mods


def _graph():
    mods = _modules()

    def owner(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for mod, path in mods.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                deps.update(owner(a.name) for a in node.names if a.name.startswith("ctr."))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and (node.module == "ctr" or node.module.startswith("ctr.")):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    deps.add(full if full in mods else owner(node.module))
        deps.discard(mod)
        deps.discard("")
        graph[mod] = deps
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert _cycles(_graph()) == []


def test_the_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_cli_imports_click():
    for mod, path in _modules().items():
        if mod.startswith("ctr.cli"):
            continue
        with open(path) as f:
            tree = ast.parse(f.read())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(n == "click" or n.startswith("click.") for n in names), mod


def test_lower_layers_never_import_the_cli_or_the_instance_layer():
    graph = _graph()
    lower = ("ctr.spec", "ctr.store", "ctr.drivers", "ctr.namespaces", "ctr.cgroups",
             "ctr.rootfs", "ctr.net", "ctr.native", "ctr.vm", "ctr.images")
    for mod, deps in graph.items():
        if mod.startswith(lower):
            bad = {d for d in deps if d.startswith("ctr.cli") or d == "ctr.instance"}
            assert not bad, f"{mod} imports {bad}"


# What a foreground `ctr run` imports in ctr's own process (the CLI, the verb's
# module, and the layers a container's start and end go through).
RUN_PATH = ("ctr.cli", "ctr.cli.run", "ctr.instance", "ctr.drivers.container",
            "ctr.images.store", "ctr.images.config", "ctr.images.layerstore", "ctr.store",
            "ctr.health", "ctr.sdnotify", "ctr.signals", "ctr.net.attach", "ctr.host",
            "ctr.namespaces", "ctr.rootfs", "ctr.cgroups.v1", "ctr.events", "ctr.report")
# Modules a start has no use for, each a few milliseconds of it when imported.
NOT_ON_THE_RUN_PATH = ("shutil", "tarfile", "hashlib", "subprocess", "tempfile", "zlib",
                       "bz2", "lzma", "ctypes", "socket", "ssl", "asyncio", "email",
                       "http.client", "urllib.request", "pyroute2", "jsonschema", "cgroupspy",
                       "ctr.images.layers", "ctr.images.archive", "ctr.images.pull",
                       "ctr.net.links", "ctr.net.nft", "ctr.monitor", "ctr.query", "ctr.vm")


def test_the_run_path_imports_nothing_heavy(tmp_path):
    import subprocess
    import sys

    probe = (f"import importlib, sys\nfor m in {RUN_PATH!r}:\n    importlib.import_module(m)\n"
             f"print(*[m for m in {NOT_ON_THE_RUN_PATH!r} if m in sys.modules])")
    # cwd elsewhere: the installed package, not the source tree, is under test
    r = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == []
