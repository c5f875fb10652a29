from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from horae import AsyncScheduler
from horae.testing import FakeClock

START = "2027-01-01T00:00:00+00:00"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def scheduler(clock: FakeClock) -> AsyncIterator[AsyncScheduler]:
    async with AsyncScheduler(clock=clock, timezone="UTC") as scheduler:
        yield scheduler
