"""Our topics' decode fast path gives every message the event Faust's own codec path gives, errors
included (`recstream.streaming.channels.RawSchema`)."""

import time

import pytest
from faust import Schema
from faust.exceptions import KeyDecodeError
from faust.types import TP
from faust.types.tuples import Message

from recstream.streaming import channels
from recstream.streaming.app import app


def _message(key: bytes | None, value: bytes | None) -> Message:
    return Message(
        topic="t", partition=0, offset=7, timestamp=time.time(), timestamp_type=0, headers=[],
        key=key, value=value, checksum=None, tp=TP("t", 0),
    )  # fmt: skip


@pytest.mark.parametrize(
    "key, value",
    [(b"user-1", b'{"type": "view"}'), (None, b"v"), (b"", b""), ("vidéo".encode(), b"\xff raw")],
)
async def test_the_fast_path_gives_the_event_faust_gives(key: bytes | None, value: bytes) -> None:
    for topic in (channels.interactions, channels.covisit, channels.videos):
        assert isinstance(topic.schema, channels.RawSchema)
        fast = await topic.schema.compile(app)(_message(key, value), propagate=True)
        faust = await Schema.compile(topic.schema, app)(_message(key, value), propagate=True)
        assert (fast.key, fast.value, fast.message.offset) == (faust.key, faust.value, faust.message.offset)
        assert type(fast.key) is type(faust.key) and type(fast.value) is bytes


async def test_a_key_that_is_not_utf8_fails_as_in_faust() -> None:
    for decode in (
        channels.interactions.schema.compile(app),
        Schema.compile(channels.interactions.schema, app),
    ):
        with pytest.raises(KeyDecodeError):
            await decode(_message(b"\xff\xfe", b"v"), propagate=True)
