"""The table cache over a real RocksDB (rocksdict): what a flush writes, and what it keeps in memory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import orjson
import rocksdict

from recstream.streaming.tablecache import BatchTable


def _table(path: Path) -> SimpleNamespace:
    dbs: dict[int, rocksdict.Rdict] = {}

    def db_for_partition(p: int) -> rocksdict.Rdict:
        if p not in dbs:
            dbs[p] = rocksdict.Rdict(str(path / str(p)), options=rocksdict.Options(raw_mode=True))
        return dbs[p]

    return SimpleNamespace(name="t", data=SimpleNamespace(_db_for_partition=db_for_partition), dbs=dbs)


def test_a_flush_writes_every_dirty_key_once_and_keeps_the_cache_up_to_its_cap(tmp_path: Path) -> None:
    raw = _table(tmp_path)
    table = BatchTable(raw, keep_keys=3)
    for i in range(3):
        table.put(0, f"k{i}", {"v": i})
    table.put(1, "gone", None)
    out = asyncio.run(table.write_local(table.take_dirty()))
    assert sorted(out[0]) == [(f"k{i}".encode(), orjson.dumps({"v": i})) for i in range(3)]
    assert out[1] == [(b"gone", None)]
    assert orjson.loads(raw.dbs[0][b"k1"]) == {"v": 1}
    # 4 keys cached (a deletion too) > 3: released; the next read comes from RocksDB.
    assert sum(map(len, table.cache.values())) == 0
    assert table.get(0, "k2") == {"v": 2} and table.get(1, "gone") is None

    kept = BatchTable(_table(tmp_path / "kept"), keep_keys=10)
    kept.put(0, "a", {"n": 1})
    asyncio.run(kept.write_local(kept.take_dirty()))
    assert kept.cache[0] == {"a": {"n": 1}} and not kept.dirty  # kept decoded, nothing left to write
    kept.get(0, "a")["n"] = 2  # changed in place, as the agents do, then put
    kept.put(0, "a", kept.get(0, "a"))
    assert asyncio.run(kept.write_local(kept.take_dirty())) == {0: [(b"a", b'{"n":2}')]}


def test_a_snapshot_table_writes_the_value_as_it_was_taken_and_keeps_the_newer_one(tmp_path: Path) -> None:
    """What a flush takes between two batches is what it writes, even if a batch changes the value
    before it is encoded; the newer value stays in memory and dirty for the next flush."""
    raw = _table(tmp_path)
    table = BatchTable(raw, keep_keys=0, snapshot=dict)
    table.put(0, "u", {"h": [["v1", 1, 1.0]], "o": 7})
    taken = table.take_dirty()
    state = table.get(0, "u")  # the next batch, while the flush encodes
    state["h"], state["o"] = [["v2", 2, 1.0], *state["h"]], 8
    table.put(0, "u", state)
    out = asyncio.run(table.write_local(taken))
    assert out == {0: [(b"u", orjson.dumps({"h": [["v1", 1, 1.0]], "o": 7}))]}
    assert orjson.loads(raw.dbs[0][b"u"])["o"] == 7
    assert table.get(0, "u")["o"] == 8 and table.dirty[0] == {"u"}  # kept (dirty), not released
    assert asyncio.run(table.write_local(table.take_dirty()))[0][0][1] == orjson.dumps(state)


def test_a_decoded_table_works_on_tuples_and_writes_the_same_json(tmp_path: Path) -> None:
    """User histories are tuples in memory (the collector stops tracking them) and JSON arrays stored."""
    from recstream.streamstate import decode_history

    raw = _table(tmp_path)
    raw.data._db_for_partition(0)[b"u"] = orjson.dumps({"h": [["v1", 1, 1.0], ["v0", 0, 0.5]], "o": 3})
    table = BatchTable(raw, keep_keys=0, decode=decode_history)
    state = table.get(0, "u")
    assert state == {"h": [("v1", 1, 1.0), ("v0", 0, 0.5)], "o": 3}
    table.put(0, "u", state)
    out = asyncio.run(table.write_local(table.take_dirty()))
    assert out == {0: [(b"u", orjson.dumps({"h": [["v1", 1, 1.0], ["v0", 0, 0.5]], "o": 3}))]}


def test_encoding_awaits_the_pause_it_is_given_between_slices(tmp_path: Path) -> None:
    from recstream.streaming.tablecache import ENCODE_SLICE

    table = BatchTable(_table(tmp_path), keep_keys=10 * ENCODE_SLICE)  # nothing released here
    for i in range(2 * ENCODE_SLICE + 1):
        table.put(0, f"k{i}", {"v": i})
    pauses = []

    async def pause() -> None:
        pauses.append(1)

    asyncio.run(table.write_local(table.take_dirty(), pause))
    assert len(pauses) == 2


def test_the_cache_is_released_in_slices_and_keeps_what_batches_dirty_meanwhile(tmp_path: Path) -> None:
    """Past its cap the cache is released a slice at a time with the loop given back between: freed at
    once, tens of thousands of decoded values held the event loop for up to ~0.3 s. A batch that runs
    in a pause and changes a key keeps its newer value (dirty, unwritten); one that reads a key
    already released gets RocksDB's value, the one just written."""
    from recstream.streaming.tablecache import RELEASE_SLICE

    raw = _table(tmp_path)
    table = BatchTable(raw, keep_keys=RELEASE_SLICE)
    n = 3 * RELEASE_SLICE
    for i in range(n):
        table.put(0, f"k{i}", {"v": i})
    cached_at_pause: list[int] = []  # during the release

    async def pause() -> None:
        if len(table.cache[0]) == n:
            return  # still encoding
        cached_at_pause.append(len(table.cache[0]))
        if len(cached_at_pause) == 1:  # a batch between two slices
            table.put(0, f"k{n - 1}", {"v": -1})  # a key of the last slice, not released yet
            assert table.get(0, "k0") == {"v": 0}  # released already: read back from RocksDB

    asyncio.run(table.write_local(table.take_dirty(), pause))
    assert cached_at_pause[0] == n - RELEASE_SLICE  # one slice released at the first pause
    assert len(cached_at_pause) >= 3  # between every two slices, and none held the whole release
    # Kept: the key changed meanwhile (dirty) and the one read back after its slice went (RocksDB's).
    assert table.cache[0] == {f"k{n - 1}": {"v": -1}, "k0": {"v": 0}} and table.dirty[0] == {f"k{n - 1}"}
    assert orjson.loads(raw.dbs[0][f"k{n - 1}".encode()]) == {"v": n - 1}  # RocksDB: the flushed value
