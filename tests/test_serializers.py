"""The tagged JSON serializer, the pickle opt-in, and the stored job payload."""

from __future__ import annotations

import dataclasses
import socket
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import attrs
import pytest

from horae import CronTrigger, DeserializationError, InvalidCallableError, Job, SerializationError
from horae.serializers import JSONSerializer, PickleSerializer
from horae.stores._codec import decode_job, encode_job

from . import jobfuncs


@attrs.frozen
class Point:
    x: int
    when: datetime


@dataclasses.dataclass
class Box:
    label: str
    items: tuple[int, ...]


VALUES = [
    None,
    True,
    0,
    -5,
    1.5,
    "text",
    [1, "a", None],
    {"a": 1, "b": [2, 3]},
    {1: "int key", (1, 2): "tuple key"},
    {"$type": "a user key that looks like a tag"},
    (1, (2, 3)),
    {1, 2, 3},
    frozenset({"x"}),
    datetime(2027, 1, 1, 12, 30, tzinfo=timezone.utc),
    datetime(2026, 10, 25, 1, 30, fold=1, tzinfo=ZoneInfo("Europe/London")),
    datetime(2027, 1, 1, 12, 30),
    date(2027, 2, 14),
    time(16, 38, 5),
    timedelta(days=-1, seconds=5, microseconds=7),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("12.3400"),
    b"\x00\xffbytes",
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_json_round_trip(value: object) -> None:
    serializer = JSONSerializer()
    back = serializer.loads(serializer.dumps(value))
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, datetime):
        assert back.utcoffset() == value.utcoffset()
        assert getattr(back.tzinfo, "key", None) == getattr(value.tzinfo, "key", None)


def test_registered_attrs_and_dataclasses() -> None:
    serializer = JSONSerializer(types=[Point, Box])
    value = [Point(1, datetime(2027, 1, 1, tzinfo=timezone.utc)), Box("b", (1, 2))]
    assert serializer.loads(serializer.dumps(value)) == value
    with pytest.raises(DeserializationError, match="not registered"):
        JSONSerializer().loads(serializer.dumps(value))
    with pytest.raises(SerializationError, match="neither an attrs class nor a dataclass"):
        serializer.register(socket.socket)


def test_refusal_names_the_path() -> None:
    serializer = JSONSerializer(types=[Point])
    with socket.socket() as sock:
        with pytest.raises(SerializationError, match=r"args\[1\]\['peer'\]: cannot store"):
            serializer.dumps([1, {"peer": sock}], "args")
        bad = Point(1, sock)  # type: ignore[arg-type]
        with pytest.raises(SerializationError, match=r"args\[0\]\.when: cannot store .*socket"):
            serializer.dumps([bad], "args")


def test_pickle_is_opt_in_and_round_trips() -> None:
    serializer = PickleSerializer()
    value = {"complex": 1 + 2j, "when": datetime(2027, 1, 1, tzinfo=timezone.utc)}
    assert serializer.loads(serializer.dumps(value)) == value
    with pytest.raises(SerializationError, match="cannot pickle"), socket.socket() as sock:
        serializer.dumps(sock)
    with pytest.raises(DeserializationError):
        serializer.loads("not base64 pickle")


def make_job(**changes: object) -> Job:
    values: dict[str, object] = {
        "id": "j",
        "func": jobfuncs.async_add,
        "func_ref": "tests.jobfuncs:async_add",
        "trigger": CronTrigger(hour="9", day_of_week="mon-fri", timezone="Europe/Paris"),
        "args": (1, datetime(2027, 1, 1, tzinfo=timezone.utc)),
        "kwargs": {"b": Decimal("2")},
        "name": "adder",
        "executor": "async",
        "coalesce": False,
        "max_instances": 3,
        "misfire_grace_time": 30,
        "jitter": 1.5,
        "timeout": None,
        "next_run_time": datetime(2027, 1, 4, 8, tzinfo=timezone.utc),
        "metadata": {"team": "billing"},
    }
    values.update(changes)
    return Job(**values)  # type: ignore[arg-type]


def test_job_payload_round_trip() -> None:
    serializer = JSONSerializer()
    job = make_job()
    back = decode_job(job.id, job.next_run_time, encode_job(job, serializer), serializer)
    assert back == job
    assert back.func is jobfuncs.async_add
    assert back.func_ref == "tests.jobfuncs:async_add"


def test_unstorable_jobs_are_refused() -> None:
    serializer = JSONSerializer()
    with pytest.raises(InvalidCallableError, match="lambda"):
        encode_job(make_job(func=lambda: None, func_ref=None), serializer)

    def nested() -> None: ...

    with pytest.raises(InvalidCallableError, match="inside a function"):
        encode_job(make_job(func=nested, func_ref=None), serializer)
    with pytest.raises(SerializationError, match=r"args\[0\]"):
        encode_job(make_job(args=(object(),)), serializer)
    with pytest.raises(SerializationError, match="metadata"):
        encode_job(make_job(metadata={"x": object()}), serializer)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ("{not json", "job 'j' cannot be read back"),
        ('{"v": 99}', "payload version 99"),
        ("{}", "payload version None"),
    ],
)
def test_corrupted_payloads_name_the_job(payload: str, match: str) -> None:
    with pytest.raises(DeserializationError, match=match):
        decode_job("j", None, payload, JSONSerializer())


def test_deleted_callable_and_unknown_trigger_kind() -> None:
    serializer = JSONSerializer()
    text = encode_job(make_job(), serializer)
    gone = text.replace("tests.jobfuncs:async_add", "tests.jobfuncs:deleted_function")
    with pytest.raises(DeserializationError, match="cannot be imported"):
        decode_job("j", None, gone, serializer)
    weird = text.replace('"kind":"cron"', '"kind":"lunar"')
    with pytest.raises(DeserializationError, match="lunar"):
        decode_job("j", None, weird, serializer)
