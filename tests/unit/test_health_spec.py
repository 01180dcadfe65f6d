"""Healthchecks in the spec: docker's durations, the options over the image's
HEALTHCHECK, and docker's status rules (ctr.health._judge)."""

import pytest

from ctr import health
from ctr.errors import InvalidSpec
from ctr.spec import Healthcheck
from ctr.spec.health import build_healthcheck, parse_duration


def test_durations_are_gos():
    assert parse_duration("30s", "x") == 30 * 10**9
    assert parse_duration("1m30s", "x") == 90 * 10**9
    assert parse_duration("500ms", "x") == 500 * 10**6
    assert parse_duration("1.5h", "x") == 5400 * 10**9
    assert parse_duration("0", "x") == 0
    for bad in ("", "30", "s", "1x", "-1s", "1s 2s", "9" * 30 + "h"):
        with pytest.raises(InvalidSpec):
            parse_duration(bad, "--health-interval")


def test_options_over_the_images():
    image = Healthcheck(test=("CMD", "true"), interval=10**9, retries=2)
    assert build_healthcheck(image) == image
    assert build_healthcheck(None) == Healthcheck()
    assert build_healthcheck(image, retries="5") == Healthcheck(test=("CMD", "true"),
                                                              interval=10**9, retries=5)
    assert build_healthcheck(image, cmd="curl -f x") == Healthcheck(
        test=("CMD-SHELL", "curl -f x"), interval=10**9, retries=2)
    assert build_healthcheck(image, disabled=True) == Healthcheck(test=("NONE",))
    with pytest.raises(InvalidSpec, match="conflicts"):
        build_healthcheck(None, cmd="true", disabled=True)
    with pytest.raises(InvalidSpec, match="at least 1ms"):
        build_healthcheck(None, cmd="true", timeout="10us")
    with pytest.raises(InvalidSpec):
        build_healthcheck(None, cmd="true", retries="many")


class _Spec:
    def __init__(self, **hc):
        self.healthcheck = Healthcheck(test=("CMD", "x"), **hc)


def test_dockers_status_rules():
    spec = _Spec(retries=2)
    state = {"started": "2026-01-01T00:00:00.000Z"}
    h = {"Status": "starting", "FailingStreak": 0}
    health._judge(h, spec, state, 1, 0)
    assert h == {"Status": "starting", "FailingStreak": 1}
    health._judge(h, spec, state, 1, 0)
    assert h == {"Status": "unhealthy", "FailingStreak": 2}
    health._judge(h, spec, state, 0, 0)
    assert h == {"Status": "healthy", "FailingStreak": 0}
    # within the start period a failure of a starting instance does not count
    spec = _Spec(retries=1, start_period=60 * 10**9)
    began = health._ns(state["started"])
    h = {"Status": "starting", "FailingStreak": 0}
    health._judge(h, spec, state, 1, began + 10**9)
    assert h == {"Status": "starting", "FailingStreak": 0}
    health._judge(h, spec, state, 1, began + 61 * 10**9)
    assert h == {"Status": "unhealthy", "FailingStreak": 1}
