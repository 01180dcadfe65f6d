"""ctr.cli.COMMANDS, the table of verbs: it names every verb ctr has, each
module is imported only when its verb runs, and help and completion list
them all (no root, no containers)."""

import importlib
import os
import pkgutil
import subprocess
import sys

import click
import pytest

import ctr.cli
from ctr.cli import COMMANDS


def _modules():
    return [importlib.import_module(f"ctr.cli.{m.name}")
            for m in pkgutil.iter_modules(ctr.cli.__path__)]


@pytest.mark.parametrize("verb", sorted(COMMANDS))
def test_each_verb_is_the_command_of_its_name(verb):
    module, attr = COMMANDS[verb].split(":")
    cmd = getattr(importlib.import_module(f"ctr.cli.{module}"), attr)
    assert isinstance(cmd, click.Command) and cmd.name == verb


def test_every_command_defined_is_a_verb_or_below_one():
    below, top = set(), set()
    for module in _modules():
        for value in vars(module).values():
            if isinstance(value, click.Group):
                below.update(id(c) for c in value.commands.values())
            if isinstance(value, click.Command) and value is not ctr.cli.cli:
                top.add((value.name, id(value)))
    listed = {id(ctr.cli.cli.get_command(None, v)) for v in COMMANDS}
    missing = sorted(name for name, ident in top if ident not in below | listed)
    assert missing == []


def test_no_module_registers_itself():
    assert [m.__name__ for m in _modules() if hasattr(m, "register")] == []


def run(*args, root, env=None):
    # cwd elsewhere: the installed package, not the source tree, is under test
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=root,
                          env={**os.environ, **(env or {})})


def test_a_verb_imports_its_own_module_only(tmp_path):
    probe = ("import sys\nfrom ctr.cli import main\ntry:\n    main(sys.argv[1:])\n"
             "except SystemExit:\n    pass\n"
             "print(*sorted(m for m in sys.modules if m.startswith('ctr.cli.')))")
    r = run("-c", probe, "--root", str(tmp_path), "ls", root=str(tmp_path))
    assert r.returncode == 0, r.stderr
    verbs = {f"ctr.cli.{where.split(':')[0]}" for where in COMMANDS.values()}
    # health: the run flags of healthchecks, which instances' run and create take
    assert set(r.stdout.splitlines()[-1].split()) & verbs == {"ctr.cli.instances",
                                                               "ctr.cli.health"}


def test_help_lists_every_verb(tmp_path):
    r = run("-m", "ctr", "--help", root=str(tmp_path))
    listed = r.stdout.split("Commands:")[1].split()
    assert set(COMMANDS) <= set(listed)


def test_completion_offers_every_verb(tmp_path):
    r = run("-m", "ctr", root=str(tmp_path), env={
        "_CTR_COMPLETE": "bash_complete", "COMP_WORDS": "ctr ", "COMP_CWORD": "1",
        "CTR_ROOT": str(tmp_path)})
    offered = {line.split(",", 1)[1] for line in r.stdout.splitlines() if "," in line}
    assert offered == set(COMMANDS)
