"""Addresses of the PostgreSQL and Redis servers the store tests use."""

from __future__ import annotations

import os

import pytest

POSTGRES_DSN = os.environ.get("HORAE_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HORAE_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRED = os.environ.get("HORAE_REQUIRE_SERVICES") == "1"


def unavailable(what: str, error: BaseException) -> None:
    """Skip (or fail, under HORAE_REQUIRE_SERVICES=1) because ``what`` cannot be reached."""
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if REQUIRED:
        pytest.fail(f"{message}; HORAE_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(message)
