"""The jobs of a store that cannot be read here, for the tools that list jobs (the CLI's
``jobs list``, the dashboard).

``Store.get_jobs`` leaves out (and logs) a job whose stored form cannot be read back in
this process: most often its callable does not import here (a function defined in the
script that added the job, ``__main__:tick``, or a module missing from this process's
path). Such a job is still in the store, and still runs wherever its callable imports;
a tool that listed only the readable jobs would hide it, and "No jobs." would be a lie.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from horae.errors import DeserializationError, JobLookupError
from horae.stores.base import Store


@attrs.frozen
class UnreadableJob:
    """A stored job that cannot be read back here.

    Attributes:
        id: the job's id.
        error: why (the ``DeserializationError`` of ``get_job``, without the job id it
            repeats); ``None`` when it was not looked up (beyond a tool's limit).
    """

    id: str
    error: str | None


async def job_ids(store: Store) -> list[str] | None:
    """Every job id in the store, unreadable jobs' too; ``None`` for a store written for
    an older horae, which cannot list them (it has no ``get_job_ids``)."""
    if not callable(getattr(store, "get_job_ids", None)):
        return None
    return await store.get_job_ids()


async def unreadable_jobs(
    store: Store, ids: Sequence[str], readable: Collection[str], *, limit: int | None = None
) -> list[UnreadableJob]:
    """The jobs among ``ids`` (from :func:`job_ids`) that ``readable`` lacks, with why.

    ``readable`` is the ids of the jobs that ``get_jobs`` returned *after* ``ids`` was
    read: a job added in between is then readable, not missing. Each missing job is read
    with ``get_job`` (one round trip each) to learn why it cannot be read, up to
    ``limit`` of them; a job removed in between is left out.
    """
    found: list[UnreadableJob] = []
    for job_id in ids:
        if job_id in readable:
            continue
        if limit is not None and len(found) >= limit:
            found.append(UnreadableJob(job_id, None))
            continue
        try:
            await store.get_job(job_id)
        except DeserializationError as exc:
            found.append(UnreadableJob(job_id, reason(job_id, exc)))
        except JobLookupError:
            pass  # removed since the ids were read
        # Readable now: replaced since get_jobs read it; the next listing shows it.
    return found


def reason(job_id: str, exc: DeserializationError) -> str:
    """Why the job cannot be read, without the ``job 'x' cannot be read back (...)``
    frame the stores put around it (the listing names the job already)."""
    text = str(exc)
    head = f"job {job_id!r} cannot be read back ("
    if text.startswith(head) and text.endswith(")"):
        return text[len(head) : -1]
    return text or type(exc).__name__
