"""The CLI's contract: one-line errors and exit codes (no root, no containers)."""

import subprocess
import sys

import pytest

from ctr.errors import InvalidSpec
from ctr.spec import parse_signal


def run(*args, root):
    # cwd elsewhere: the installed package, not the source tree, is under test
    return subprocess.run([sys.executable, "-m", "ctr", "--root", root, *args],
                          capture_output=True, text=True, cwd=root)


@pytest.mark.parametrize("args,fragment", [
    (["run"], "missing argument"),
    (["run", "--bogus", "busybox"], "no such option"),
    (["frobnicate"], "no such command"),
    (["stop", "-t", "-1", "x"], "invalid value"),
    (["ls", "--format", "xml"], "invalid value"),
])
def test_usage_errors_are_one_line_125(tmp_path, args, fragment):
    r = run(*args, root=str(tmp_path))
    assert r.returncode == 125
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("ctr: error: "), r.stderr
    assert fragment in r.stderr.lower()


def test_no_arguments_prints_help(tmp_path):
    r = run(root=str(tmp_path))
    assert r.returncode == 0 and "Usage" in r.stdout


def test_ls_on_an_empty_root(tmp_path):
    r = run("ls", "-a", "--format", "json", root=str(tmp_path))
    assert (r.returncode, r.stdout.strip()) == (0, "[]")


@pytest.mark.parametrize("value,num", [("KILL", 9), ("sigterm", 15), ("1", 1), ("HUP", 1)])
def test_parse_signal(value, num):
    assert parse_signal(value) == num


@pytest.mark.parametrize("value", ["", "0", "65", "NOPE", "SIG_DFL", "-9"])
def test_parse_bad_signal(value):
    with pytest.raises(InvalidSpec):
        parse_signal(value)
