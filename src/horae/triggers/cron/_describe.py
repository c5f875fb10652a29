"""Short English descriptions of cron fields: ``"at 09:00 on Monday through Friday"``.

Descriptions are for people reading ``print_jobs()``: they follow the expressions as
written (``"*/5"`` is "every 5 minutes") and do not try to be a complete grammar.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from horae.triggers.cron._fields import MONTH_NAMES, WEEKDAY_NAMES

__all__ = ["describe_fields"]

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ORDINALS = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 5: "5th"}
_MAX_LISTED = 6


def _join(items: list[str]) -> str:
    if len(items) > _MAX_LISTED:
        return ", ".join(items[:_MAX_LISTED]) + "..."
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _plain(text: str) -> str:
    return text


def _month(text: str) -> str:
    if text.isdigit():
        return _MONTHS[int(text) - 1] if 1 <= int(text) <= 12 else text
    return _MONTHS[MONTH_NAMES.index(text)] if text in MONTH_NAMES else text


def _weekday_namer(crontab: bool) -> Callable[[str], str]:
    def name(text: str) -> str:
        if text.isdigit():
            value = int(text)
            index = (value + 6) % 7 if crontab else value
            return _WEEKDAYS[index] if 0 <= index < 7 else text
        if text in WEEKDAY_NAMES:
            return _WEEKDAYS[WEEKDAY_NAMES.index(text)]
        return text

    return name


#: Units whose steps restart every cycle (of this many values, from 0).
_CYCLES = {"second": 60, "minute": 60, "hour": 24}


def _items(
    expr: str, unit: str, name: Callable[[str], str], bare: bool = False
) -> tuple[list[str], list[str]]:
    """Split an expression into plain values and phrases for ranges and steps.

    ``bare``: write a plain range as "March through May" (for named values).
    """
    values: list[str] = []
    phrases: list[str] = []
    for raw in expr.split(","):
        item = raw.strip().lower()
        body, _, step = item.partition("/")
        first, dash, last = body.partition("-")
        every = f"every {step} {unit}s" if step else f"every {unit}"
        cycle = _CYCLES.get(unit)
        if body == "*" and step.isdigit() and cycle and cycle % int(step):
            # "*/45" minutes fires at :00 and :45, not every 45 minutes: say which.
            values.extend(name(str(v)) for v in range(0, cycle, int(step)))
            continue
        if body == "*":
            phrases.append(every)
        elif dash and bare and not step:  # "March through May"
            phrases.append(f"{name(first)} through {name(last)}")
        elif dash:
            phrases.append(f"{every} from {name(first)} through {name(last)}")
        elif step:
            phrases.append(f"{every} from {name(first)}")
        else:
            values.append(name(item))
    return values, phrases


def _field(
    expr: str, unit: str, name: Callable[[str], str] = _plain, prefix: str | None = None
) -> str:
    """``"at minute 0 and 30"``, ``"every 5 minutes"``, ``"March through May"``."""
    bare = prefix == ""
    values, phrases = _items(expr, unit, name, bare)
    if values:
        phrases.insert(0, f"{unit if prefix is None else prefix} {_join(values)}".strip())
    return " and ".join(phrases)


def _day(expr: str) -> str:
    parts: list[str] = []
    numbers: list[str] = []
    for raw in expr.split(","):
        item = " ".join(raw.strip().lower().split())
        if item in ("last", "l"):
            parts.append("the last day of the month")
        elif item.startswith("last "):
            parts.append(f"the last {_weekday_namer(False)(item[5:])}")
        elif item[:1].isdigit() and " " in item:
            ordinal, weekday = item.split(" ", 1)
            parts.append(f"the {ordinal} {_weekday_namer(False)(weekday)}")
        else:
            numbers.append(item)
    if numbers:
        parts.insert(0, _field(",".join(numbers), "day", prefix="day"))
    return _join(parts)


def _weekday(expr: str, crontab: bool) -> str:
    name = _weekday_namer(crontab)
    parts: list[str] = []
    plain: list[str] = []
    for raw in expr.split(","):
        item = raw.strip().lower()
        if "#" in item:
            weekday, _, n = item.partition("#")
            parts.append(f"the {_ORDINALS.get(int(n), n + 'th')} {name(weekday)}")
        elif crontab and item.endswith("l"):
            parts.append(f"the last {name(item[:-1])}")
        else:
            plain.append(item)
    if plain:
        parts.insert(0, _field(",".join(plain), "weekday", name, prefix=""))
    return _join(parts)


def _time(fields: Mapping[str, str]) -> str:
    hour, minute, second = fields["hour"], fields["minute"], fields["second"]
    if hour.isdigit() and minute.isdigit() and second.isdigit():
        clock = f"{int(hour):02d}:{int(minute):02d}"
        return f"at {clock}:{int(second):02d}" if int(second) else f"at {clock}"
    parts: list[str] = []
    if second != "0":
        parts.append(_field(second, "second", prefix="at second"))
    if minute == "*" and second == "0":
        parts.append("every minute")
    elif minute != "*":
        parts.append(_field(minute, "minute", prefix="at minute"))
    if hour == "*":
        if minute != "*" and "*" not in minute:
            parts.append("of every hour")
    elif "/" in hour:
        parts.append(_field(hour, "hour", prefix="during hour"))
    else:
        parts.append(f"during hours {_field(hour, 'hour', prefix='')}")
    return " ".join(parts) or "every second"


def describe_fields(fields: Mapping[str, str], *, crontab: bool, day_or: bool) -> str:
    """Describe effective field expressions (every field given, defaults filled in).

    Args:
        fields: ``year`` .. ``second`` as the trigger applies them.
        crontab: weekday numbers count from Sunday.
        day_or: day and weekday combine by OR (crontab with both restricted).
    """
    words = [_time(fields)]
    day, weekday = fields["day"], fields["day_of_week"]
    day_text = _day(day) if day != "*" else ""
    weekday_text = _weekday(weekday, crontab) if weekday != "*" else ""
    if day_text and weekday_text:
        joiner = " or on " if day_or else " if it is "
        words.append(f"on {day_text}{joiner}{weekday_text}")
    elif day_text or weekday_text:
        words.append(f"on {day_text or weekday_text}")
    if fields["week"] != "*":
        words.append(f"in ISO week {_field(fields['week'], 'week', prefix='')}")
    if fields["month"] != "*":
        words.append(f"in {_field(fields['month'], 'month', _month, prefix='')}")
    if fields["year"] != "*":
        words.append(f"in {_field(fields['year'], 'year', prefix='')}")
    return " ".join(words)
