"""Jobs and a ``setup()`` hook for the CLI tests (``horae run --import tests.cli_jobs``)."""

from __future__ import annotations

import os
from pathlib import Path

from horae import AsyncScheduler

#: Where the job that setup() adds writes; set by the test that runs ``horae run``.
SETUP_FILE_ENV = "HORAE_CLI_TEST_FILE"


def touch(path: str, text: str = "ran") -> str:
    """Append a line to ``path`` (the tests wait for it to appear)."""
    with Path(path).open("a") as file:
        file.write(text + "\n")
    return text


async def setup(scheduler: AsyncScheduler) -> None:
    """Add a job that runs once, now, and writes to the file the test named."""
    await scheduler.add_job(
        touch, args=[os.environ[SETUP_FILE_ENV], "setup"], id="from-setup", replace_existing=True
    )
