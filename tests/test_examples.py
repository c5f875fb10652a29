"""The README's demo really runs and shows every kind of job it promises."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]


async def test_demo_runs_and_exits(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("horae_demo", ROOT / "examples" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    sys.modules["horae_demo"] = demo
    spec.loader.exec_module(demo)
    await demo.main(seconds=3.8)
    out = capsys.readouterr().out
    assert "executed  heartbeat" in out
    assert "executed  crunch" in out
    assert "executed  once" in out
    assert "error     flaky" in out
    assert "demo finished" in out
