"""ctr-oci: the OCI runtime command, in runc's grammar

    ctr-oci [GLOBAL] VERB [OPTIONS] ID [ARGS]

The only module of ctr.oci that prints. argparse, not click: podman calls
`state` many times per container, so the start stays lean (the verbs import
what they need). Exit status: 0, or 1 for any error (what runc exits), with
one line `ctr-oci: error: MSG` on stderr and, with --log, one line in the log
(`--log-format json`: {"level":"error","msg":...,"time":...}, which podman
and containerd read); `run` and a foreground `exec` exit with the command's
status.
"""

import argparse
import json
import os
import signal
import sys

from ctr.errors import CtrError, InvalidSpec

VERSION = "0.1.0"
EXIT_ERROR = 1


class Failure(Exception):
    """A usage error found by the parser: reported like every other error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Failure(message)


def _parser():
    p = _Parser(prog="ctr-oci", add_help=True)
    p.add_argument("--root", default="/run/ctr-oci")
    p.add_argument("--log", default=None)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--systemd-cgroup", action="store_true")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--version", "-v", action="store_true")
    p.add_argument("--rootless", default=None)
    p.add_argument("--criu", default=None)
    sub = p.add_subparsers(dest="verb")

    def verb(name, *aliases):
        v = sub.add_parser(name, aliases=list(aliases))
        return v

    for name in ("create", "run"):
        v = verb(name)
        v.add_argument("--bundle", "-b", default=".")
        v.add_argument("--pid-file", default=None)
        v.add_argument("--console-socket", default=None)
        v.add_argument("--no-pivot", action="store_true")
        v.add_argument("--no-new-keyring", action="store_true")
        v.add_argument("--preserve-fds", type=int, default=0)
        if name == "run":
            v.add_argument("--detach", "-d", action="store_true")
            v.add_argument("--keep", action="store_true")
        v.add_argument("id")
    for name in ("start", "state", "pause", "resume"):
        verb(name).add_argument("id")
    v = verb("kill")
    v.add_argument("--all", "-a", action="store_true")
    v.add_argument("id")
    v.add_argument("signal", nargs="?", default="SIGTERM")
    v = verb("delete")
    v.add_argument("--force", "-f", action="store_true")
    v.add_argument("id")
    v = verb("ps")
    v.add_argument("--format", "-f", choices=("table", "json"), default="table")
    v.add_argument("id")
    v = verb("list")
    v.add_argument("--format", "-f", choices=("table", "json"), default="table")
    v.add_argument("--quiet", "-q", action="store_true")
    v = verb("events")
    v.add_argument("--stats", action="store_true")
    v.add_argument("--interval", type=_seconds, default=5.0)
    v.add_argument("id")
    v = verb("update")
    v.add_argument("--resources", "-r", default=None)
    v.add_argument("id")
    verb("features")
    v = verb("spec")
    v.add_argument("--bundle", "-b", default=".")
    v.add_argument("--rootless", action="store_true")
    v = verb("exec")
    v.add_argument("--process", "-p", default=None)
    v.add_argument("--detach", "-d", action="store_true")
    v.add_argument("--pid-file", default=None)
    v.add_argument("--console-socket", default=None)
    v.add_argument("--tty", "-t", action="store_true")
    v.add_argument("--cwd", default=None)
    v.add_argument("--env", "-e", action="append", default=[])
    v.add_argument("--user", "-u", default=None)
    v.add_argument("--no-new-privs", action="store_true")
    v.add_argument("--preserve-fds", type=int, default=0)
    v.add_argument("id")
    v.add_argument("args", nargs=argparse.REMAINDER)
    return p


def _seconds(text):
    """runc's --interval: a Go duration (5s, 500ms) or plain seconds."""
    t = str(text).strip()
    try:
        value = float(t[:-2]) / 1000 if t.endswith("ms") else float(t.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}: must be positive")
    return value


def parse_signal(value):
    """A number, KILL or SIGKILL (runc's kill)."""
    text = str(value).upper()
    if text.isdigit() and 0 < int(text) < signal.NSIG:
        return int(text)
    name = text if text.startswith("SIG") else "SIG" + text
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise InvalidSpec(f"unknown signal {value!r}") from None


def _user(text):
    uid, _, gid = (text or "0").partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise InvalidSpec(f"invalid --user {text!r}: expected UID[:GID]")
    return {"uid": int(uid), "gid": int(gid or 0)}


def _exec_process(a, root):
    from ctr.oci import runtime

    if a.process:
        try:
            with open(a.process, "rb") as f:
                process = json.loads(f.read())
        except OSError as err:
            raise InvalidSpec(f"--process {a.process}: {err.strerror}") from err
        except ValueError as err:
            raise InvalidSpec(f"--process {a.process} is not JSON: {err}") from err
        return runtime.check_process(process, f"--process {a.process}")
    args = [x for x in a.args if x != "--"] if a.args[:1] == ["--"] else a.args
    if not args:
        raise InvalidSpec("exec needs a command (ARGS) or --process")
    spec = runtime.load(root, a.id).spec
    env = list(spec.env) + list(a.env)
    process = {"args": args, "env": env, "cwd": a.cwd or spec.workdir, "terminal": a.tty}
    process["user"] = _user(a.user) if a.user else _user(spec.user)
    return runtime.check_process(process)


def _print_json(data):
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _warn(lines):
    """Warnings (a poststart or poststop hook that failed) go to stderr only:
    --log holds nothing but the error of a failing command (see the doc)."""
    for line in lines:
        sys.stderr.write(f"ctr-oci: warning: {line}\n")


def run_verb(a):
    """Do what `a` asks; returns the exit status."""
    from ctr.oci import runtime

    root = a.root
    if a.verb in ("create", "run"):
        proc = runtime.create(root, a.id, a.bundle, pid_file=a.pid_file,
                              console_socket=a.console_socket, preserve_fds=a.preserve_fds,
                              foreground=a.verb == "run" and not a.detach,
                              systemd_cgroup=a.systemd_cgroup)
        if a.verb == "create":
            return 0
        _warn(runtime.start(root, a.id))
        if a.detach:
            return 0
        code = proc.wait()
        if not a.keep:
            _warn(runtime.delete(root, a.id, force=True))
        return code
    if a.verb == "start":
        _warn(runtime.start(root, a.id))
    elif a.verb == "state":
        _print_json(runtime.load(root, a.id).oci_state())
    elif a.verb == "kill":
        runtime.kill(root, a.id, parse_signal(a.signal), a.all)
    elif a.verb == "delete":
        _warn(runtime.delete(root, a.id, a.force))
    elif a.verb == "pause":
        runtime.pause(root, a.id)
    elif a.verb == "resume":
        runtime.resume(root, a.id)
    elif a.verb == "events":
        if a.stats:
            sys.stdout.write(json.dumps(runtime.stats(root, a.id)) + "\n")
        else:
            for event in runtime.events(root, a.id, a.interval):
                sys.stdout.write(json.dumps(event) + "\n")
                sys.stdout.flush()
    elif a.verb == "update":
        runtime.update(root, a.id, _read_resources(a.resources))
    elif a.verb == "ps":
        pids = runtime.pids(root, a.id)
        if a.format == "json":
            sys.stdout.write(json.dumps(pids) + "\n")
        else:
            sys.stdout.write("PID\tCMD\n")
            for pid in pids:
                sys.stdout.write(f"{pid}\t{_cmdline(pid)}\n")
    elif a.verb == "list":
        _list(root, a)
    elif a.verb == "features":
        from ctr.oci.documents import features

        _print_json(features())
    elif a.verb == "spec":
        _write_spec(a.bundle)
    elif a.verb == "exec":
        proc = runtime.exec_(root, a.id, _exec_process(a, root), detach=a.detach,
                             pid_file=a.pid_file, console_socket=a.console_socket)
        return 0 if a.detach else proc.wait()
    return 0


def _read_resources(path):
    """update's --resources: a file, or - for stdin, holding linux.resources."""
    if path is None:
        raise InvalidSpec("update needs --resources FILE (or - for stdin)")
    try:
        if path == "-":
            return json.loads(sys.stdin.read())
        with open(path, "rb") as f:
            return json.loads(f.read())
    except OSError as err:
        raise InvalidSpec(f"--resources {path}: {err.strerror}") from err
    except ValueError as err:
        raise InvalidSpec(f"--resources {path} is not JSON: {err}") from err


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _list(root, a):
    from ctr.errors import NotFound
    from ctr.oci.state import containers

    out = []
    for c in containers(root):
        try:
            out.append(c.oci_state())
        except NotFound:
            continue  # being created or removed
    if a.format == "json":
        sys.stdout.write(json.dumps(out) + "\n")
    elif a.quiet:
        sys.stdout.write("".join(s["id"] + "\n" for s in out))
    else:
        sys.stdout.write("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
        for s in out:
            sys.stdout.write(f"{s['id']}\t{s['pid']}\t{s['status']}\t{s['bundle']}\t"
                             f"{s['created']}\t{s['owner'] or 'root'}\n")


def _write_spec(bundle):
    from ctr.oci.documents import default_config

    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise CtrError(f"File {path} exists. Remove it first")
    with open(path, "x") as f:
        f.write(json.dumps(default_config(), indent="\t") + "\n")


def _log(path, fmt, msg, level="error"):
    """One line in --log; a log that cannot be written is not the error to report."""
    from ctr.oci.state import now

    if fmt == "json":
        line = json.dumps({"level": level, "msg": msg, "time": now()})
    else:
        line = f'time="{now()}" level={level} msg={json.dumps(msg)}'
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


def _global(argv, name, default):
    """A global option's value read before parsing, so that a usage error is
    logged where the caller looks too."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    log, fmt, debug = _global(argv, "--log", None), _global(argv, "--log-format", "text"), False
    try:
        a = _parser().parse_args(argv)
        log, fmt, debug = a.log, a.log_format, a.debug
        if a.version:
            sys.stdout.write(f"ctr-oci version {VERSION}\nspec: 1.0.2\n")
            return 0
        if a.verb is None:
            raise Failure("a command is required (create, start, state, kill, delete, ...)")
        if a.systemd_cgroup:
            raise CtrError("--systemd-cgroup: systemd is not the cgroup manager of ctr-oci "
                           "(it writes cgroupfs itself): drop the option")
        return run_verb(a)
    except (CtrError, Failure, OSError) as err:
        msg = str(err) if not isinstance(err, OSError) else (
            f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
        if debug:
            import traceback

            traceback.print_exc()
        if log:
            _log(log, fmt, msg)
        sys.stderr.write(f"ctr-oci: error: {msg}\n")
        return EXIT_ERROR


def entry():
    sys.exit(main())
