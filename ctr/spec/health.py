"""Healthchecks in a spec: the run/create options (--health-cmd, --health-interval,
--health-timeout, --health-retries, --health-start-period, --no-healthcheck) over
the image's HEALTHCHECK, with docker's rules: --health-cmd replaces the image's
test, each other option replaces that one value, --no-healthcheck turns the
image's off (and cannot be given with the others). Running checks is ctr.health's.
"""

from ctr import lazyre
from ctr.errors import InvalidSpec
from ctr.spec.model import Healthcheck

# Go's time.ParseDuration, as docker's flags take them: 30s, 1m30s, 500ms, 1.5h
DURATION_PART = lazyre.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
         "m": 60_000_000_000, "h": 3_600_000_000_000}
MAX_DURATION = 1 << 62  # ns: Go's durations are int64
MIN_DURATION = 1_000_000  # docker: a check's interval, timeout or start period is >= 1ms
MAX_RETRIES = 1 << 31
TEST_KINDS = ("NONE", "CMD", "CMD-SHELL")


def parse_duration(value, what):
    """Go's duration string -> nanoseconds; "0" is zero."""
    text = str(value).strip()
    if text == "0":
        return 0
    parts = DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidSpec(f"invalid {what} {value!r}: expected a duration like 30s, 1m30s "
                          "or 500ms")
    ns = int(sum(float(n) * UNITS[u] for n, u in parts))
    if ns > MAX_DURATION:
        raise InvalidSpec(f"invalid {what} {value!r}: too long")
    return ns


def check_durations(hc, what="healthcheck"):
    """docker's bounds: set durations are at least 1ms, retries not negative."""
    names = {"interval": "interval", "timeout": "timeout", "start_period": "start period"}
    for key, name in names.items():
        ns = hc.get(key)
        if ns is not None and ns != 0 and not MIN_DURATION <= ns <= MAX_DURATION:
            raise InvalidSpec(f"invalid {what} {name}: at least 1ms, at most "
                              f"{MAX_DURATION // 10**9} s")
    retries = hc.get("retries")
    if retries is not None and not 0 <= retries <= MAX_RETRIES:
        raise InvalidSpec(f"invalid {what} retries {retries}: 0 to {MAX_RETRIES}")
    test = hc.get("test") or ()
    if test and (test[0] not in TEST_KINDS or (test[0] != "NONE" and len(test) < 2)
                 or any("\0" in t for t in test)):
        raise InvalidSpec(f"invalid {what} test {list(test)!r}: expected NONE, CMD ARG..., "
                          "or CMD-SHELL COMMAND")


def build_healthcheck(image=None, *, cmd=None, interval=None, timeout=None, retries=None,
                      start_period=None, disabled=False):
    """The CLI's options (strings) over the image's Healthcheck (or None) -> a
    Healthcheck; an empty one when there is none."""
    given = {k: v for k, v in (("--health-cmd", cmd), ("--health-interval", interval),
                               ("--health-timeout", timeout), ("--health-retries", retries),
                               ("--health-start-period", start_period)) if v is not None}
    if disabled:
        if given:
            raise InvalidSpec(f"--no-healthcheck conflicts with {', '.join(given)}")
        return Healthcheck(test=("NONE",))
    hc = dict(image or {})
    if cmd is not None:
        if not cmd.strip() or "\0" in cmd:
            raise InvalidSpec("invalid --health-cmd: an empty command")
        hc["test"] = ("CMD-SHELL", cmd)
    for key, value, what in (("interval", interval, "--health-interval"),
                             ("timeout", timeout, "--health-timeout"),
                             ("start_period", start_period, "--health-start-period")):
        if value is not None:
            hc[key] = parse_duration(value, what)
    if retries is not None:
        try:
            hc["retries"] = int(str(retries).strip())
        except ValueError:
            raise InvalidSpec(f"invalid --health-retries {retries!r}: expected a number") \
                from None
    out = Healthcheck(hc)
    check_durations(out, "--health-*" if given else "healthcheck")
    return out
