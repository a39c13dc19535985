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
    out = asyncio.run(table.write_local())
    assert sorted(out[0]) == [(f"k{i}".encode(), orjson.dumps({"v": i})) for i in range(3)]
    assert out[1] == [(b"gone", None)]
    assert orjson.loads(raw.dbs[0][b"k1"]) == {"v": 1}
    # 4 keys cached (a deletion too) > 3: released; the next read comes from RocksDB.
    assert sum(map(len, table.cache.values())) == 0
    assert table.get(0, "k2") == {"v": 2} and table.get(1, "gone") is None

    kept = BatchTable(_table(tmp_path / "kept"), keep_keys=10)
    kept.put(0, "a", {"n": 1})
    asyncio.run(kept.write_local())
    assert kept.cache[0] == {"a": {"n": 1}} and not kept.dirty  # kept decoded, nothing left to write
    kept.get(0, "a")["n"] = 2  # changed in place, as the agents do, then put
    kept.put(0, "a", kept.get(0, "a"))
    assert asyncio.run(kept.write_local()) == {0: [(b"a", b'{"n":2}')]}
