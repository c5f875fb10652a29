"""The cron trigger: keyword fields (APScheduler 3 style) and crontab strings.

``CronTrigger`` is the public name; the modules behind it are private:
``_fields`` parses one field, ``_crontab`` a crontab line, ``_schedule`` finds the next
matching wall time, ``_instants`` maps wall times to instants across DST changes and
``_describe`` writes the English description.
"""

from __future__ import annotations

from horae.triggers.cron._trigger import CronTrigger

__all__ = ["CronTrigger"]
