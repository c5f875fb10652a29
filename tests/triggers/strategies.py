"""Hypothesis strategies shared by the trigger tests."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

ZONES = [
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Havana",
    "UTC",
]

zone_names = st.sampled_from(ZONES)
zones = zone_names.map(ZoneInfo)

#: Aware datetimes (any fold, microseconds included) between 1990 and 2080.
aware_datetimes = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2080, 1, 1), timezones=zones
)
