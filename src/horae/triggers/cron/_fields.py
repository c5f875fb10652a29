"""Parsing of one cron field: ``"*/5"``, ``"mon-fri"``, ``"1,15,last"``, ``"5#3"``.

The keyword API (``CronTrigger(day_of_week="mon-fri")``) and crontab strings share one
grammar with a few differences, carried by :class:`FieldSpec`: crontab weekdays count
from Sunday (0 and 7) where the keyword API counts from Monday, and each side has its own
spelling of "last day" and "n-th weekday" (vectors README, rules 4 and 6).

Parsing never builds value sets; it returns :class:`ParsedField`, the list of ranges and
special days, which ``_schedule`` turns into lookup tables.
"""

from __future__ import annotations

import re

import attrs

from horae.errors import TriggerError

__all__ = [
    "CRONTAB_SPECS",
    "KEYWORD_SPECS",
    "FieldSpec",
    "ParsedField",
    "parse_field",
]

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
_FULL_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_ORDINAL = re.compile(r"([0-9]+)(st|nd|rd|th)(?:\s+(\S+))?")
_LAST_WEEKDAY = re.compile(r"last\s+(\S+)")
_NTH_CRONTAB = re.compile(r"([a-z0-9]+)#([0-9]*)")
_MAX_DIGITS = 6  # longer numbers are out of range anyway; int() of huge strings is slow


@attrs.frozen
class FieldSpec:
    """What one field accepts.

    Attributes:
        name: the argument name used in error messages (``"day_of_week"``).
        low: the smallest value.
        high: the largest value a number may have.
        open_high: where ``*`` and ``a/n`` end (``high``, except crontab weekdays: 6).
        names: accepted names (lower case) and their values.
        valid: how to say what is valid, for messages.
        kind: ``"month"``, ``"weekday"``, ``"day"`` or ``"number"``, for messages and the
            field's special forms.
        crontab: the field belongs to a crontab string (``L``, ``#``, Sunday = 0 and 7).
    """

    name: str
    low: int
    high: int
    open_high: int
    names: dict[str, int]
    valid: str
    kind: str = "number"
    crontab: bool = False


@attrs.frozen
class ParsedField:
    """A parsed field: what matches, before any lookup table is built.

    Attributes:
        ranges: ``(first, last, step)`` items, values as written (crontab weekdays still
            count from Sunday).
        last_day: the day field holds ``last`` (``L`` in crontab).
        nth_weekdays: ``(n, weekday)`` items, weekday 0 = Monday: ``3rd fri`` or ``5#3``.
        last_weekdays: weekdays (0 = Monday) whose last occurrence in a month matches:
            ``last fri`` or ``5L``.
        star: the expression is exactly ``*`` (a crontab field that restricts nothing).
    """

    ranges: tuple[tuple[int, int, int], ...]
    last_day: bool = False
    nth_weekdays: tuple[tuple[int, int], ...] = ()
    last_weekdays: tuple[int, ...] = ()
    star: bool = False


def _names(names: tuple[str, ...], first: int) -> dict[str, int]:
    return {name: i + first for i, name in enumerate(names)}


_MONTH_VALID = "jan..dec or 1..12"
_KW_WEEKDAY_VALID = "mon..sun or 0..6 (0 = Monday)"
_CT_WEEKDAY_VALID = "sun..sat or 0..7 (0 and 7 = Sunday)"

KEYWORD_SPECS: dict[str, FieldSpec] = {
    "year": FieldSpec("year", 1970, 9999, 9999, {}, "1970..9999"),
    "month": FieldSpec("month", 1, 12, 12, _names(MONTH_NAMES, 1), _MONTH_VALID, "month"),
    "day": FieldSpec(
        "day",
        1,
        31,
        31,
        {},
        "1..31, 'last', 'last <weekday>' or '1st'..'5th <weekday>' (e.g. '3rd fri')",
        "day",
    ),
    "week": FieldSpec("week", 1, 53, 53, {}, "1..53 (ISO 8601 weeks)"),
    "day_of_week": FieldSpec(
        "day_of_week", 0, 6, 6, _names(WEEKDAY_NAMES, 0), _KW_WEEKDAY_VALID, "weekday"
    ),
    "hour": FieldSpec("hour", 0, 23, 23, {}, "0..23"),
    "minute": FieldSpec("minute", 0, 59, 59, {}, "0..59"),
    "second": FieldSpec("second", 0, 59, 59, {}, "0..59"),
}

_SUNDAY_FIRST = _names(("sun", "mon", "tue", "wed", "thu", "fri", "sat"), 0)

CRONTAB_SPECS: dict[str, FieldSpec] = {
    "minute": FieldSpec("minute", 0, 59, 59, {}, "0..59", crontab=True),
    "hour": FieldSpec("hour", 0, 23, 23, {}, "0..23", crontab=True),
    "day": FieldSpec("day", 1, 31, 31, {}, "1..31 or L", "day", crontab=True),
    "month": FieldSpec(
        "month", 1, 12, 12, _names(MONTH_NAMES, 1), _MONTH_VALID, "month", crontab=True
    ),
    "day_of_week": FieldSpec(
        "day_of_week", 0, 7, 6, _SUNDAY_FIRST, _CT_WEEKDAY_VALID, "weekday", crontab=True
    ),
}


class _Parser:
    """Parses one field expression; holds what error messages need."""

    def __init__(self, spec: FieldSpec, expr: str, source: str | None) -> None:
        self.spec = spec
        self.expr = expr
        self.source = source

    def fail(self, item: str, problem: str, hint: str | None = None) -> TriggerError:
        """An error naming the field, the item, the whole expression and what is valid."""
        name = self.spec.name
        if self.source is not None:
            where = f"{item!r} in crontab {self.source!r}"
        elif item == self.expr:
            where = repr(item)
        else:
            where = f"{item!r} in {self.expr!r}"
        return TriggerError(name, f"{name}: {where} {problem}; {hint or 'use ' + self.spec.valid}")

    def parse(self) -> ParsedField:
        spec = self.spec
        if not self.expr.strip():
            raise self.fail(
                self.expr,
                "is empty",
                f"use '*' for every value, or values, ranges and steps of {spec.valid} "
                "separated by commas",
            )
        ranges: list[tuple[int, int, int]] = []
        last_day = False
        nth: list[tuple[int, int]] = []
        last_weekdays: list[int] = []
        for raw in self.expr.split(","):
            item = raw.strip()
            if not item:
                raise self.fail(
                    self.expr, "has an empty list item", "separate values with single commas"
                )
            text = item.lower()
            special = self._special(item, text)
            if special is None:
                ranges.append(self._range(item, text))
            elif special[0] == "last":
                last_day = True
            elif special[0] == "nth":
                nth.append((special[1], special[2]))
            else:
                last_weekdays.append(special[1])
        return ParsedField(
            tuple(ranges),
            last_day,
            tuple(nth),
            tuple(last_weekdays),
            star=self.expr.strip() == "*",
        )

    # "last", "last fri", "3rd fri" (day field); "L" (crontab day); "5#3", "5L" (crontab
    # weekday). Returns None for an ordinary value, range or step.
    def _special(self, item: str, text: str) -> tuple[str, int, int] | None:
        spec = self.spec
        if spec.crontab:
            if spec.kind == "day" and text == "l":
                return ("last", 0, 0)
            if spec.kind == "weekday":
                match = _NTH_CRONTAB.fullmatch(text)
                if match:
                    weekday = self._crontab_weekday(item, match.group(1))
                    n_text = match.group(2)
                    if not n_text or len(n_text) > _MAX_DIGITS or not 1 <= int(n_text) <= 5:
                        raise self.fail(
                            item,
                            "asks for an n-th weekday that no month has",
                            "write <weekday>#<n> with n 1..5, e.g. '5#3' for the third Friday",
                        )
                    return ("nth", int(n_text), weekday)
                if len(text) > 1 and text.endswith("l") and text[:-1].isalnum():
                    return ("lastwd", self._crontab_weekday(item, text[:-1]), 0)
            if "#" in text:
                raise self.fail(item, "uses '#', which only the day_of_week field takes")
            return None
        if text.startswith("last") or _ORDINAL.fullmatch(text):
            if spec.kind != "day":
                hint = (
                    f"write it as day={item!r}"
                    if spec.kind == "weekday"
                    else f"use {spec.valid} here"
                )
                raise self.fail(item, "is only valid in the day field", hint)
            if text == "last":
                return ("last", 0, 0)
            match = _LAST_WEEKDAY.fullmatch(text)
            if match:
                return ("lastwd", self._weekday_name(item, match.group(1)), 0)
            match = _ORDINAL.fullmatch(text)
            if match is None:
                raise self.fail(item, "is not understood", "write 'last' or 'last fri'")
            ordinal, weekday_text = match.group(1), match.group(3)
            expected = {"1": "st", "2": "nd", "3": "rd"}.get(ordinal, "th")
            if len(ordinal) > 1 or not 1 <= int(ordinal) <= 5 or match.group(2) != expected:
                raise self.fail(
                    item,
                    "is not an n-th weekday of a month",
                    "a month has at most 5 of each weekday: use 1st, 2nd, 3rd, 4th or 5th",
                )
            if weekday_text is None:
                raise self.fail(item, "needs a weekday", f"write e.g. '{ordinal}{expected} mon'")
            return ("nth", int(ordinal), self._weekday_name(item, weekday_text))
        return None

    def _weekday_name(self, item: str, text: str) -> int:
        if text in WEEKDAY_NAMES:
            return WEEKDAY_NAMES.index(text)
        raise self.fail(item, f"names {text!r}, which is not a weekday", "use mon..sun")

    def _crontab_weekday(self, item: str, text: str) -> int:
        # Crontab weekday, 0 or 7 = Sunday, converted to 0 = Monday.
        if text in _SUNDAY_FIRST:
            value = _SUNDAY_FIRST[text]
        elif text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS:
            value = int(text)
            if value > 7:
                raise self.fail(
                    item, f"has weekday {value}, out of range", f"use {_CT_WEEKDAY_VALID}"
                )
        else:
            raise self.fail(item, f"names {text!r}, which is not a weekday")
        return (value + 6) % 7

    def _range(self, item: str, text: str) -> tuple[int, int, int]:
        spec = self.spec
        if any(c.isspace() for c in text):
            raise self.fail(item, "contains a space", "separate values with commas, e.g. '9,17'")
        body, slash, step_text = text.partition("/")
        step = 1
        if slash:
            if not step_text:
                raise self.fail(item, "has no step after '/'", "write e.g. '*/5' or '10-40/10'")
            if not (step_text.isascii() and step_text.isdigit()):
                raise self.fail(item, f"has step {step_text!r}, which is not a number")
            step = int(step_text) if len(step_text) <= _MAX_DIGITS else 10**_MAX_DIGITS
            if step == 0:
                raise self.fail(item, "has step 0", "the step must be at least 1")
        if body == "*":
            return (spec.low, spec.open_high, step)
        first_text, dash, last_text = body.partition("-")
        if dash:
            if not first_text or not last_text:
                raise self.fail(
                    item, "is an incomplete range", "write a range as first-last, e.g. '9-17'"
                )
            first = self._value(item, first_text)
            last = self._value(item, last_text, range_end=first > 0)
            if first > last:
                raise self.fail(
                    item, "is a reversed range", self._reversed_hint(first_text, last_text)
                )
            return (first, last, step)
        first = self._value(item, body)
        if slash:
            return (first, max(first, spec.open_high), step)
        return (first, first, step)

    def _reversed_hint(self, first: str, last: str) -> str:
        spec = self.spec
        if spec.crontab and spec.kind == "weekday":
            return (
                "ranges do not wrap around; Sunday at the end of a range is 7, "
                "so write e.g. '5-7' or 'fri-sun'"
            )
        if spec.kind == "weekday":
            tail = "mon" if last in ("mon", "0") else f"mon-{last}"
            return f"ranges do not wrap around; write '{first}-sun,{tail}' instead"
        if spec.kind == "month":
            tail = "jan" if last in ("jan", "1") else f"jan-{last}"
            return f"ranges do not wrap around; write '{first}-dec,{tail}' instead"
        tail = last if last == str(spec.low) else f"{spec.low}-{last}"
        return (
            f"ranges go from low to high and do not wrap around; write '{last}-{first}', "
            f"or '{first}-{spec.open_high},{tail}' to go round"
        )

    def _value(self, item: str, text: str, range_end: bool = False) -> int:
        spec = self.spec
        # Say "is ..." when the text is the whole item, "has 'x', which is ..." otherwise.
        subject = "is" if text == item.lower() else f"has {text!r}, which is"
        if text.isascii() and text.isdigit():
            value = int(text) if len(text) <= _MAX_DIGITS else spec.high + 1
            if not spec.low <= value <= spec.high:
                raise self.fail(item, f"{subject} out of range")
            return value
        if text in spec.names:
            value = spec.names[text]
            if range_end and spec.crontab and spec.kind == "weekday" and value == 0:
                return 7  # "fri-sun": Sunday ending a range is 7 (rule 6); "sun-sun" is 0
            return value
        if text in _FULL_WEEKDAYS or text in _FULL_MONTHS:
            raise self.fail(
                item,
                f"{subject} a full name",
                f"write {text[:3]!r} (names are three letters)",
            )
        raise self.fail(item, f"{subject} {self._not_a_name(text)}")

    def _not_a_name(self, text: str) -> str:
        kind = self.spec.kind
        if kind == "month":
            if text in WEEKDAY_NAMES:
                return "a weekday name, not a month (weekdays go in day_of_week)"
            return "not a month"
        if kind == "weekday":
            if text in MONTH_NAMES:
                return "a month name, not a weekday (months go in month)"
            return "not a weekday"
        if text.startswith("-") and text[1:].isdigit():
            return "out of range"
        return "not a number"


def parse_field(spec: FieldSpec, expr: str, source: str | None = None) -> ParsedField:
    """Parse one field expression.

    Args:
        spec: the field's grammar.
        expr: the expression, e.g. ``"*/5"`` or ``"mon-fri"``.
        source: the whole crontab string when the field comes from one (for messages).

    Raises:
        TriggerError: on ``spec.name``, naming the bad item and what is valid.
    """
    return _Parser(spec, expr, source).parse()
