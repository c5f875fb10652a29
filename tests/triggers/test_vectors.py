"""Every case of ``../shared/vectors`` must pass."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from horae import HoraeError, TriggerError

from .vectors import FILES, VECTORS, build, load

FIRE_FILES = [f for f in FILES if f != "errors.json"]


def test_vectors_are_present() -> None:
    missing = [f for f in FILES if not (VECTORS / f).exists()]
    assert not missing, f"trigger vectors missing from {VECTORS}: {missing}"
    assert sum(len(load(f)) for f in FILES) >= 500


def _fire_cases() -> list[Any]:
    return [pytest.param(case, id=case["id"]) for f in FIRE_FILES for case in load(f)]


def _error_cases() -> list[Any]:
    return [pytest.param(case, id=case["id"]) for case in load("errors.json")]


@pytest.mark.parametrize("case", _fire_cases())
def test_fire_times(case: dict[str, Any]) -> None:
    trigger = build(case["trigger"], case["args"])
    compare_offsets = case["trigger"] not in ("and", "or")
    t: datetime | None = datetime.fromisoformat(case["after"])
    got: list[str | None] = []
    for expected in case["expect"]:
        assert t is not None
        t = trigger.next(t)
        got.append(t.isoformat() if t is not None else None)
        if expected is None:
            assert t is None, f"expected exhaustion, got {got}"
            break
        want = datetime.fromisoformat(expected)
        assert t is not None, f"exhausted early; got {got}, expected {case['expect']}"
        assert t == want, f"got {got}, expected {case['expect']}"
        if compare_offsets:
            assert t.utcoffset() == want.utcoffset(), f"offset differs: got {got}"


@pytest.mark.parametrize("case", _error_cases())
def test_errors(case: dict[str, Any]) -> None:
    with pytest.raises(TriggerError) as info:
        build(case["trigger"], case["args"])
    err = info.value
    assert isinstance(err, HoraeError)
    assert isinstance(err, ValueError)
    assert err.field == case["error_field"], str(err)
    assert case["error_field"] in str(err), f"message does not name the field: {err}"
    bad = case["args"].get(case["error_field"])
    if isinstance(bad, (str, int)) and not isinstance(bad, bool) and case["trigger"] != "crontab":
        assert str(bad) in str(err), f"message does not name the bad value {bad!r}: {err}"
