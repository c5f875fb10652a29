"""Crontab strings: ``"*/5 * * * *"``, ``"0 9 * * mon-fri"``, ``"@daily"`` (vectors rule 6)."""

from __future__ import annotations

import attrs

from horae.errors import TriggerError
from horae.triggers.cron._fields import CRONTAB_SPECS, ParsedField, parse_field

__all__ = ["CRONTAB_FIELDS", "MACROS", "parse_crontab"]

#: The five fields of a crontab line, in order.
CRONTAB_FIELDS = ("minute", "hour", "day", "month", "day_of_week")

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_SHAPE = "'minute hour day month day_of_week', e.g. '*/5 * * * *' or '0 9 * * mon-fri'"


def expand_macro(expr: str) -> str:
    """The five-field form of a macro (``"@daily"``), or ``expr`` itself.

    Raises:
        TriggerError: on ``expr``, for ``@reboot`` and unknown macros.
    """
    text = expr.strip()
    if not text.startswith("@"):
        return expr
    macro = text.lower()
    if macro in MACROS:
        return MACROS[macro]
    if macro == "@reboot":
        raise TriggerError(
            "expr",
            f"expr: {expr!r} has no fire times a scheduler can compute; to run a job when "
            "the scheduler starts, add it without a trigger (add_job(func))",
        )
    known = ", ".join(MACROS)
    raise TriggerError("expr", f"expr: {expr!r} is not a known macro; use one of {known}")


def parse_crontab(expr: object) -> tuple[dict[str, ParsedField], bool]:
    """Parse a crontab string.

    Returns:
        The parsed fields by name (weekdays converted to 0 = Monday) and
        whether day and weekday combine by OR (both restricted, Vixie cron).

    Raises:
        TriggerError: on ``expr`` for a non-string, a wrong number of fields or a bad
            macro; on the field's name for a bad field.
    """
    if not isinstance(expr, str):
        raise TriggerError(
            "expr",
            f"expr: a crontab expression must be a string, got {expr!r}; write e.g. '*/5 * * * *'",
        )
    parts = expand_macro(expr).split()
    if len(parts) != len(CRONTAB_FIELDS):
        if not parts:
            problem = "is empty"
        else:
            problem = f"has {len(parts)} field{'s' if len(parts) != 1 else ''}"
        extra = ""
        if len(parts) > len(CRONTAB_FIELDS):
            extra = (
                " (crontab has no seconds or year field; use CronTrigger(second=..., "
                "year=...) for those)"
            )
        raise TriggerError("expr", f"expr: {expr!r} {problem}; expected 5: {_SHAPE}{extra}")
    fields = {
        name: parse_field(CRONTAB_SPECS[name], part, expr)
        for name, part in zip(CRONTAB_FIELDS, parts, strict=True)
    }
    day_or = not fields["day"].star and not fields["day_of_week"].star
    fields["day_of_week"] = _monday_first(fields["day_of_week"])
    return fields, day_or


def _monday_first(parsed: ParsedField) -> ParsedField:
    # Crontab weekdays count from Sunday (0 and 7); the schedule counts from Monday = 0.
    # ("5#3" and "5L" are converted by the parser already.)
    values = {v for first, last, step in parsed.ranges for v in range(first, last + 1, step)}
    return attrs.evolve(parsed, ranges=tuple(((v + 6) % 7, (v + 6) % 7, 1) for v in sorted(values)))
