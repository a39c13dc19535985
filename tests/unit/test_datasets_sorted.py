"""Time-ordered loading: the external merge sort (runs on disk, rounds of merges, duplicates, memory)."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import pytest

import recstream.datasets as datasets
from recstream.datasets import LoadReport, iter_events, iter_events_sorted, sort
from recstream.records import encode

HEADER = "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"


def kuairec_file(path: Path, n: int, seed: int = 0, duplicates: int = 0) -> list[str]:
    """A shuffled KuaiRec-format file of n distinct rows plus `duplicates` repeats placed far apart."""
    rng = random.Random(seed)
    rows = [
        f"{i % 97},{i},{1000 + i},{5000},,,{1_600_000_000 + rng.randrange(10**6)}.5,0.2\n" for i in range(n)
    ]
    rng.shuffle(rows)
    repeats = [rows[i] for i in range(duplicates)]
    path.write_text(HEADER + "".join(rows + repeats), encoding="utf-8")
    return rows


def key(e: datasets.Interaction) -> tuple:
    return (e.ts, e.user_id, e.video_id, e.type, e.watch_time_ms)


def test_sorted_across_many_runs_equals_in_memory_sort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big_matrix.csv"
    kuairec_file(path, 500, duplicates=7)
    monkeypatch.setattr(sort, "FAN_IN", 3)  # 500 rows / 20 per run = 25 runs: several merge rounds
    monkeypatch.setattr(datasets, "DEDUPE_WINDOW", 1)  # leave the far-apart duplicates to the sort
    spill = tmp_path / "spill"
    spill.mkdir()
    report = LoadReport()
    events = list(iter_events_sorted("kuairec", path, report, chunk_rows=20, tmp_dir=spill))
    streamed = list(iter_events("kuairec", path))
    assert len(streamed) == 507  # the window of 1 row does not catch them...
    assert len(events) == 500 and report.duplicates == 7 and report.events == 500  # ...the sort does
    assert [key(e) for e in events] == sorted({key(e) for e in streamed})
    assert list(spill.iterdir()) == []  # temporary runs are removed


def test_sorted_keeps_a_rows_events_together_and_cleans_up_when_abandoned(tmp_path: Path) -> None:
    header = (
        "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,"
        "long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab\n"
    )
    rows = [f"{u},{v},20220430,1800,{ts},1,1,0,1,0,0,0,9000,10000,0,0,0,1,1\n" for u, v, ts in
            [(2, 5, 3000), (1, 6, 1000), (3, 7, 3000), (1, 8, 2000)]]  # fmt: skip
    path = tmp_path / "log.csv"
    path.write_text(header + "".join(rows))
    events = list(iter_events_sorted("kuairand", path, chunk_rows=1))
    assert [(e.ts, e.user_id, e.type) for e in events] == [
        (1000, "1", "view"), (1000, "1", "like"), (1000, "1", "comment"),
        (2000, "1", "view"), (2000, "1", "like"), (2000, "1", "comment"),
        (3000, "2", "view"), (3000, "2", "like"), (3000, "2", "comment"),  # equal ts: by user
        (3000, "3", "view"), (3000, "3", "like"), (3000, "3", "comment"),
    ]  # fmt: skip
    spill = tmp_path / "spill"
    spill.mkdir()
    it = iter_events_sorted("kuairand", path, chunk_rows=1, tmp_dir=spill)
    next(it)
    assert len(list(spill.iterdir())) == 1  # the sort directory exists while iterating
    it.close()
    assert list(spill.iterdir()) == []


def test_sorted_memory_is_bounded_by_the_chunk_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big_matrix.csv"
    kuairec_file(path, 6000, seed=1)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        count = sum(1 for _ in iter_events_sorted("kuairec", path, chunk_rows=200, tmp_dir=tmp_path))
        _, chunked_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        everything = list(iter_events("kuairec", path))  # what holding the file in memory costs
        _, in_memory_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == len(everything) == 6000
    assert chunked_peak < in_memory_peak / 4, (chunked_peak, in_memory_peak)


def test_encoded_events_are_the_sorted_events_bytes_with_the_same_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big_matrix.csv"
    kuairec_file(path, 500, duplicates=7)
    monkeypatch.setattr(sort, "FAN_IN", 3)
    monkeypatch.setattr(datasets, "DEDUPE_WINDOW", 1)
    as_objects, as_bytes = LoadReport(), LoadReport()
    events = list(iter_events_sorted("kuairec", path, as_objects, chunk_rows=20, tmp_dir=tmp_path))
    encoded = list(datasets.iter_encoded_sorted("kuairec", path, as_bytes, chunk_rows=20, tmp_dir=tmp_path))
    assert encoded == [(e.ts, e.user_id.encode(), encode(e)) for e in events]
    assert as_bytes == as_objects and as_bytes.duplicates == 7 and as_bytes.events == 500


def test_encoded_events_split_a_rows_events_apart(tmp_path: Path) -> None:
    header = (
        "user_id,video_id,time_ms,play_time_ms,duration_ms,is_like,is_forward,is_comment,is_follow,is_hate\n"
    )
    rows = ["u2,v5,3000,900,0,1,1,1,1,1\n", "u1,v6,1000,0,5000,0,0,0,0,0\n", "u1,v6,2000,7,5000,1,0,0,0,0\n"]
    path = tmp_path / "log.csv"
    path.write_text(header + "".join(rows))
    events = list(iter_events_sorted("kuairand", path))
    assert [e.type for e in events] == [
        "view",
        "view",
        "like",
        "view",
        "like",
        "share",
        "comment",
        "follow",
        "skip",
    ]
    assert list(datasets.iter_encoded_sorted("kuairand", path)) == [
        (e.ts, e.user_id.encode(), encode(e)) for e in events
    ]
    row = [e for e in events if e.ts == 3000]
    assert sort._line(row) == b"%020d\t[%b]\n" % (3000, b",".join(encode(e) for e in row))


KUAIRAND_HEADER = (
    "user_id,video_id,time_ms,play_time_ms,duration_ms,is_like,is_forward,is_comment,is_follow,is_hate\n"
)


def test_a_file_in_time_order_streams_the_same_events_as_the_sort(tmp_path: Path) -> None:
    rng = random.Random(3)
    rows = []
    for ts in range(1000, 1300, 10):  # ties in no particular order, repeats inside them, a bad row
        group = [f"u{rng.randrange(9)},v{rng.randrange(20)},{ts},{rng.randrange(9000)},9000,"
                 f"{rng.randrange(2)},0,0,0,0\n" for _ in range(rng.randrange(1, 6))]  # fmt: skip
        group += [group[0]] * rng.randrange(2)
        rng.shuffle(group)
        rows += group
    rows.insert(40, f"u1,v1,{rows[39].split(',')[2]},not-a-number,9000,0,0,0,0,0\n")
    path = tmp_path / "log.csv"
    path.write_text(KUAIRAND_HEADER + "".join(rows))
    assert datasets.in_time_order("kuairand", path)
    streamed, sorted_ = LoadReport(), LoadReport()
    events = datasets.iter_encoded_sorted("kuairand", path, streamed)
    next(events)
    assert streamed.rows < len(rows) / 4  # out before the file was read: no sort in the way
    events = [next(datasets.iter_encoded_sorted("kuairand", path)), *events]
    lines = sort.sorted_lines(
        datasets.iter_rows("kuairand", path, sorted_), sorted_, chunk_rows=7, tmp_dir=tmp_path
    )
    assert events == [e for line in lines for e in sort.encoded_events(line)]
    assert streamed.already_in_time_order and not sorted_.already_in_time_order
    streamed.already_in_time_order = False
    assert streamed == sorted_ and streamed.duplicates > 0 and streamed.bad_rows == 1


def test_a_file_out_of_time_order_is_sorted(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(KUAIRAND_HEADER + "u1,v1,2000,5,9,0,0,0,0,0\nu1,v2,1000,5,9,0,0,0,0,0\n")
    report = LoadReport()
    assert [e.video_id for e in iter_events_sorted("kuairand", path, report)] == ["v2", "v1"]
    assert not report.already_in_time_order and report.out_of_order == 1


@pytest.mark.parametrize(
    ("fmt", "text", "expected"),
    [
        ("kuairand", KUAIRAND_HEADER + "u1,v1,1000,5,9,0,0,0,0,0\nu1,v2, 1000 ,5,9,0,0,0,0,0\n", True),
        ("kuairand", KUAIRAND_HEADER + "u1,v1,1000,5,9,0,0,0,0,0\nu1,v2,999,5,9,0,0,0,0,0\n", False),
        ("kuairand", KUAIRAND_HEADER + "u1,v1,1000,5,9,0,0,0,0,0\nu1,v2,,5,9,0,0,0,0,0\n", False),
        ("kuairand", KUAIRAND_HEADER + "u1,v1,nan,5,9,0,0,0,0,0\nu1,v2,1,5,9,0,0,0,0,0\n", False),
        ("kuairand", KUAIRAND_HEADER + "u1,v1,1000,5,9,0,0,0,0,0\n" * 3, False),  # 3 tied rows > 2
        # the last two differ by 1 but are equal as floats: compared as ints, they are out of order
        ("kuairand", KUAIRAND_HEADER + f"u,v,{2**60 + 1},5,9,0,0,0,0,0\nu,w,{2**60},5,9,0,0,0,0,0\n", False),
        ("kuairec", HEADER + "1,2,1000,5000,,,1600000000.5,0.2\n1,3,1000,5000,,,1600000001,0.2\n", True),
        ("kuairec", HEADER + "1,2,1000,5000,2020-07-05 05:27:48,20200705,,0.2\n", False),  # dated from `time`
        ("microlens", "user,item,timestamp\n1,2,5\n3,4,6\n", True),
        ("microlens", "1,2,6\n3,4,5\n", False),
        ("microlens", "u1\tv1 v2\nu2\tv3\n", False),  # the tsv form's clock is per user
        ("movielens", "1\t2\t5\t881250949\n", False),  # no scan for this format: always sorted
    ],
)
def test_in_time_order_says_yes_only_when_the_time_column_proves_it(
    tmp_path: Path, fmt: str, text: str, expected: bool
) -> None:
    path = tmp_path / "data.csv"
    path.write_text(text)
    assert datasets.in_time_order(fmt, path, max_ties=2) is expected
