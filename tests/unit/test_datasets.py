"""Loaders on small files written in each format's exact layout, edge cases included."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from recstream.datasets import (
    FORMATS,
    IMPLICIT_WATCH_MS,
    DatasetError,
    LoadReport,
    iter_events,
    iter_events_sorted,
    iter_videos,
)
from recstream.records import Interaction


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(fmt: str, path: Path, **options: object) -> tuple[list[Interaction], LoadReport]:
    report = LoadReport()
    return list(iter_events(fmt, path, report, **options)), report


def test_formats_are_registered() -> None:
    assert set(FORMATS) == {"movielens", "microlens", "kuairand", "kuairec", "tsinghua", "jsonl"}


# --- MovieLens -------------------------------------------------------------------------------------
U_DATA = (
    "196\t242\t3\t881250949\n"
    "186\t302\t3\t891717742\n"
    "196\t999\n"  # line 3: too few fields
    "22\t377\t1\t878887116\n"  # earlier than the row above: out of order
    "196\t242\t3\t881250949\n"  # line 5: exact duplicate of line 1
    "\n"
    "244\t51\tx\t880606923\n"  # line 7: rating not a number
    "166\t346\t0\t886397596\n"  # line 8: rating 0 is not a rating
    "298\t474\t5\t884182806\n"
)


def test_movielens_u_data(tmp_path: Path) -> None:
    events, report = load("movielens", write(tmp_path, "u.data", U_DATA))
    assert [(e.user_id, e.video_id, e.ts) for e in events] == [
        ("196", "242", 881250949000),
        ("186", "302", 891717742000),
        ("22", "377", 878887116000),
        ("298", "474", 884182806000),
    ]
    assert all(e.type == "view" and e.duration_ms is None for e in events)
    # The rating is the share of a nominal watch: 3/5 and 5/5 of IMPLICIT_WATCH_MS.
    assert [e.watch_time_ms for e in events] == [36000, 36000, 12000, IMPLICIT_WATCH_MS]
    assert report.rows == 8 and report.events == 4 and report.duplicates == 1
    assert [line for line, _ in report.bad_samples] == [3, 7, 8]
    assert report.bad_rows == 3 and "fields" in report.bad_samples[0][1]
    assert report.out_of_order == 2


def test_movielens_recbole_inter_and_other_layouts(tmp_path: Path) -> None:
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n196\t242\t3\t881250949\n186\t302\t4.0\t891717742.0\n"
    dat = "1::1193::5::978300760\n1::661::3::978302109\n"
    latest = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n"
    got = {name: load("movielens", write(tmp_path, name, text))[0] for name, text in
           [("ml-100k.inter", inter), ("ratings.dat", dat), ("ratings.csv", latest)]}  # fmt: skip
    assert [(e.user_id, e.video_id, e.ts, e.watch_time_ms) for e in got["ml-100k.inter"]] == [
        ("196", "242", 881250949000, 36000),
        ("186", "302", 891717742000, 48000),
    ]
    assert [(e.video_id, e.ts) for e in got["ratings.dat"]] == [("1193", 978300760000), ("661", 978302109000)]
    assert [e.watch_time_ms for e in got["ratings.csv"]] == [48000, 6000]
    assert list(iter_videos("movielens", tmp_path / "ratings.dat")) == []


def test_movielens_sorted(tmp_path: Path) -> None:
    events = list(iter_events_sorted("movielens", write(tmp_path, "u.data", U_DATA)))
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert len(events) == 4


# --- MicroLens -------------------------------------------------------------------------------------
def test_microlens_pairs_csv(tmp_path: Path) -> None:
    text = (
        "user,item,timestamp\n"
        "1,10,1660000003000\n"
        "1,11,1660000001000\n"  # unsorted
        "2,10\n"  # line 4: missing timestamp
        "2,12,yesterday\n"  # line 5: not a number
        "1,10,1660000003000\n"  # duplicate of line 2
        "3,13,1660000009000\n"
    )
    events, report = load("microlens", write(tmp_path, "MicroLens-100k_pairs.csv", text))
    assert [(e.type, e.user_id, e.video_id, e.ts) for e in events] == [
        ("view", "1", "10", 1660000003000),
        ("comment", "1", "10", 1660000003000),
        ("view", "1", "11", 1660000001000),
        ("comment", "1", "11", 1660000001000),
        ("view", "3", "13", 1660000009000),
        ("comment", "3", "13", 1660000009000),
    ]
    views = [e for e in events if e.type == "view"]
    assert all(e.watch_time_ms == IMPLICIT_WATCH_MS and e.duration_ms is None for e in views)
    assert [line for line, _ in report.bad_samples] == [4, 5]
    assert report.duplicates == 1 and report.out_of_order == 1 and report.events == 6


def test_microlens_other_spellings(tmp_path: Path) -> None:
    headerless = load("microlens", write(tmp_path, "a_pairs.csv", "5,50,1660000000000\n"))[0]
    renamed = load(
        "microlens", write(tmp_path, "b_pairs.csv", "userID,videoID,timestamp\n5,50,1660000000000\n")
    )[0]
    assert (
        [(e.user_id, e.video_id) for e in headerless]
        == [(e.user_id, e.video_id) for e in renamed]
        == [
            ("5", "50"),
            ("5", "50"),
        ]
    )


def test_microlens_pairs_tsv_keeps_order_and_interleaves_users(tmp_path: Path) -> None:
    text = "1\t10 11 12\n2\t20 21\nbroken-line-without-tab\n3\t30 30\n"
    path = write(tmp_path, "MicroLens-50k_pairs.tsv", text)
    events, report = load("microlens", path, start_ms=1_000_000, step_ms=10)
    views = [(e.user_id, e.video_id, e.ts) for e in events if e.type == "view"]
    assert views[:5] == [
        ("1", "10", 1_000_000),
        ("1", "11", 1_000_010),
        ("1", "12", 1_000_020),
        ("2", "20", 1_000_000),
        ("2", "21", 1_000_010),
    ]
    # "30 30" is one item twice at different positions: a re-watch, not a duplicate row.
    assert views[5:] == [("3", "30", 1_000_000), ("3", "30", 1_000_010)]
    assert report.bad_samples == [(3, "expected user<TAB>item item ...")]
    in_time = [(e.user_id, e.video_id) for e in iter_events_sorted("microlens", path) if e.type == "view"]
    assert in_time[:3] == [("1", "10"), ("2", "20"), ("3", "30")]


def test_microlens_titles(tmp_path: Path) -> None:
    text = 'item,title\n10,Cats at home\n11,"Quoted, with comma"\n12,unquoted, with comma\n,no id\n'
    report = LoadReport()
    videos = list(iter_videos("microlens", write(tmp_path, "MicroLens-100k_titles.csv", text), report))
    assert [(v.video_id, v.caption) for v in videos] == [
        ("10", "Cats at home"),
        ("11", "Quoted, with comma"),
        ("12", "unquoted, with comma"),
    ]
    # No creator in MicroLens: one placeholder per video, so a creator cap never groups them.
    assert len({v.creator_id for v in videos}) == 3
    assert report.videos == 3 and report.bad_samples[0][0] == 5


# --- KuaiRand --------------------------------------------------------------------------------------
KUAIRAND_HEADER = (
    "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,"
    "long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab\n"
)


def kuairand_row(user: int, video: int, ts: int, play: str, duration: str, like=0, follow=0, comment=0,
                 forward=0, hate=0) -> str:  # fmt: skip
    return f"{user},{video},20220430,1800,{ts},1,{like},{follow},{comment},{forward},{hate},0,{play},{duration},0,0,0,1,1\n"


def test_kuairand(tmp_path: Path) -> None:
    text = KUAIRAND_HEADER + "".join([
        kuairand_row(0, 1, 1651314030792, "863", "30066"),
        kuairand_row(0, 2, 1651314090000, "45000", "15000", like=1, forward=1),  # watch ratio 3: replays
        kuairand_row(0, 3, 1651314000000, "5000", "0", comment=1),  # zero duration, earlier ts
        kuairand_row(1, 4, 1651314100000, "1200", "", follow=1, hate=1),  # missing duration
        "1,5,20220430,1800,1651314200000,1,0,0,0,0,0,0,1000\n",  # line 6: truncated
        kuairand_row(1, 6, 1651314300000, "-5", "1000"),  # line 7: negative play time
        kuairand_row(1, 7, 1651314400000, "100", "1000", like=2),  # line 8: not a flag
        kuairand_row(0, 2, 1651314090000, "45000", "15000", like=1, forward=1),  # duplicate of line 3
    ])  # fmt: skip
    events, report = load("kuairand", write(tmp_path, "log.csv", text))
    assert [(e.type, e.video_id, e.watch_time_ms, e.duration_ms) for e in events] == [
        ("view", "1", 863, 30066),
        ("view", "2", 45000, 15000),
        ("like", "2", None, None),
        ("share", "2", None, None),
        ("view", "3", 5000, None),
        ("comment", "3", None, None),
        ("view", "4", 1200, None),
        ("follow", "4", None, None),
        ("skip", "4", None, None),
    ]
    assert all(e.ts == events[1].ts for e in events[1:4])
    assert [line for line, _ in report.bad_samples] == [6, 7, 8]
    assert report.rows == 8 and report.duplicates == 1 and report.out_of_order == 1 and report.events == 9


def test_missing_column_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "log.csv", "user_id,video_id,time_ms\n1,2,3\n")
    with pytest.raises(DatasetError, match="play_time_ms"):
        list(iter_events("kuairand", path))
    with pytest.raises(DatasetError, match="no such file"):
        list(iter_events("kuairand", tmp_path / "absent.csv"))
    with pytest.raises(DatasetError, match="unknown format"):
        list(iter_events("netflix", path))


# --- KuaiRec ---------------------------------------------------------------------------------------
def test_kuairec(tmp_path: Path) -> None:
    text = (
        "user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
        "14,148,4381,6067,2020-07-05 05:27:48.378,20200705.0,1593898068.378,0.722103\n"
        "14,183,11635,6100,2020-07-05 05:28:00.057,20200705.0,1593898080.057,1.907377\n"  # ratio > 1
        "14,3649,22422,0,2020-07-05 05:29:09.479,20200705.0,1593898149.479,inf\n"  # zero duration
        "19,10,1500,3000,2020-07-05 06:00:00.000,20200705.0,,0.5\n"  # no timestamp: use time (UTC+8)
        "19,11,,4000,2020-07-05 06:01:00.000,20200705.0,1593900060.0,0.25\n"  # play rebuilt from ratio
        "19,12,100,4000,,,,\n"  # line 7: no time at all
        "19,13,abc,4000,2020-07-05 06:01:00.000,20200705.0,1593900060.0,0.25\n"  # line 8
        "14,148,4381,6067,2020-07-05 05:27:48.378,20200705.0,1593898068.378,0.722103\n"  # duplicate
    )
    events, report = load("kuairec", write(tmp_path, "small_matrix.csv", text))
    beijing_6am = int(datetime(2020, 7, 5, 6, tzinfo=timezone(timedelta(hours=8))).timestamp() * 1000)
    assert [(e.user_id, e.video_id, e.ts, e.watch_time_ms, e.duration_ms) for e in events] == [
        ("14", "148", 1593898068378, 4381, 6067),
        ("14", "183", 1593898080057, 11635, 6100),
        ("14", "3649", 1593898149479, 22422, None),
        ("19", "10", beijing_6am, 1500, 3000),
        ("19", "11", 1593900060000, 1000, 4000),
    ]
    assert all(e.type == "view" for e in events)
    assert [line for line, _ in report.bad_samples] == [7, 8] and report.duplicates == 1


# --- Tsinghua ShortVideo ---------------------------------------------------------------------------
TSINGHUA = (
    "user_id,pid,exposed_time,p_date,p_hour,watch_time,cvm_like,comment,follow,collect,forward,"
    "effective_view,hate,duration,author_id,category_id,parent_id,root_id,tag_name,title\n"
    "101,2023,1663471335,20220917,11,46,True,False,False,True,False,True,False,138.566,78,1350,288,39,photo,Lobsters\n"
    "101,2024,1663471400,20220917,11,1,False,False,False,False,False,False,True,20.0,79,1351,288,39,,Skip me\n"
    "102,2023,,20220917,12,200,False,True,True,False,True,True,False,138.566,78,1350,288,39,photo,Lobsters\n"
    "102,2025,1663471500,20220917,12,10,False,False,False,True,False,True,False,0,,,,,,\n"  # no duration, no author
    "102,2026,1663471600,20220917,12,10,maybe,False,False,False,False,True,False,5,80,1,1,1,,x\n"  # line 6
)


def test_tsinghua_interactions(tmp_path: Path) -> None:
    events, report = load("tsinghua", write(tmp_path, "interaction.csv", TSINGHUA))
    noon = int(datetime(2022, 9, 17, 12, tzinfo=timezone(timedelta(hours=8))).timestamp() * 1000)
    assert [(e.type, e.user_id, e.video_id, e.ts, e.watch_time_ms, e.duration_ms) for e in events] == [
        ("view", "101", "2023", 1663471335000, 46000, 138566),
        ("like", "101", "2023", 1663471335000, None, None),  # cvm_like (collect adds no second like)
        ("view", "101", "2024", 1663471400000, 1000, 20000),
        ("skip", "101", "2024", 1663471400000, None, None),  # hate
        ("view", "102", "2023", noon, 200000, 138566),  # no exposed_time: p_date + p_hour; ratio > 1
        ("share", "102", "2023", noon, None, None),
        ("comment", "102", "2023", noon, None, None),
        ("follow", "102", "2023", noon, None, None),
        ("view", "102", "2025", 1663471500000, 10000, None),  # zero duration = unknown
        ("like", "102", "2025", 1663471500000, None, None),  # collect alone is a like
    ]
    assert [line for line, _ in report.bad_samples] == [6]


def test_tsinghua_videos_and_duration_join(tmp_path: Path) -> None:
    wide = write(tmp_path, "interaction.csv", TSINGHUA)
    videos = list(iter_videos("tsinghua", wide))
    assert [(v.video_id, v.creator_id, v.duration_ms, v.category, v.caption) for v in videos] == [
        ("2023", "78", 138566, "39", "Lobsters"),
        ("2024", "79", 20000, "39", "Skip me"),
        ("2025", "unknown-2025", None, None, ""),
        ("2026", "80", 5000, "1", "x"),
    ]
    assert videos[0].hashtags == ["photo", "category:1350"]
    # A narrow interactions file takes durations from a separate video table.
    narrow = write(
        tmp_path,
        "narrow.csv",
        "user_id,pid,exposed_time,watch_time\n7,2024,1663471400,30\n7,9,1663471401,3\n",
    )
    table = write(tmp_path, "videos.csv", "pid,duration\n2024,20.5\n")
    events, _ = load("tsinghua", narrow, videos_path=table)
    assert [(e.video_id, e.duration_ms) for e in events] == [("2024", 20500), ("9", None)]
    assert list(iter_videos("tsinghua", write(tmp_path, "ids.csv", "user_id,pid\n1,2\n"))) == []


def test_jsonl_groups_a_view_and_its_like_into_one_row_and_reports_bad_lines(tmp_path: Path) -> None:
    from recstream.datasets import LoadReport, iter_rows

    path = tmp_path / "log.jsonl"
    path.write_text(
        '{"type": "view", "user_id": "u1", "video_id": "v1", "ts": 1000, "watch_time_ms": 9000, "duration_ms": 10000}\n'
        '{"type": "like", "user_id": "u1", "video_id": "v1", "ts": 1000}\n'
        '{"type": "view", "user_id": "u1", "video_id": "v$", "ts": 1001}\n'
        "\n"
        '{"type": "view", "user_id": "u2", "video_id": "v1", "ts": 1002, "watch_time_ms": 500}\n'
    )
    report = LoadReport()
    rows = list(iter_rows("jsonl", path, report))
    assert [[e.type for e in row] for row in rows] == [["view", "like"], ["view"]]
    assert rows[1][0].user_id == "u2" and report.rows == 4 and report.bad_rows == 1
