"""horae in a Qt (PySide6) application, on qasync's asyncio loop driven by Qt's.

The scheduler runs in the same thread as the widgets, so a job (or an event stream
reader) may update them directly. Run it with ``python examples/qt_app.py``
(``pip install PySide6-Essentials qasync``); it closes itself after a few runs.
Without a display, set ``QT_QPA_PLATFORM=offscreen``.
"""

from __future__ import annotations

import sys
from datetime import datetime

from PySide6.QtWidgets import QApplication, QLabel

from horae import AsyncScheduler, JobExecuted


async def clock_text() -> str:
    """The job: a coroutine on Qt's thread, like every slot of the application."""
    return f"{datetime.now():%H:%M:%S.%f}"[:-4]


async def main(label: QLabel, runs: int = 3) -> None:
    async with AsyncScheduler() as scheduler:
        await scheduler.add_job(clock_text, "interval", seconds=0.2, id="clock")
        async with scheduler.subscribe(JobExecuted) as events:
            async for event in events:
                label.setText(event.result)  # the GUI thread: no signals needed
                print("label:", label.text(), flush=True)
                runs -= 1
                if runs == 0:
                    break


if __name__ == "__main__":
    import qasync

    app = QApplication(sys.argv)
    label = QLabel("waiting for the first run")
    label.show()
    qasync.run(main(label))  # asyncio.run on a QEventLoop
