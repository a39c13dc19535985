from tests import reliability


def test_the_page_is_written_only_from_a_run_of_every_row(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(reliability, "PAGE", tmp_path / "reliability.md")
    monkeypatch.setattr(reliability, "results", {})
    rows = list(reliability.ROWS)
    for nodeid in rows[:-1]:
        reliability.record(nodeid, "passed", 1.0)
    assert not reliability.write_page() and not (tmp_path / "reliability.md").exists()
    reliability.record(rows[-1], "passed", 0.5)
    reliability.record(rows[-1], "failed", 2.0)  # a failing call after a passing setup: the row failed
    reliability.record(rows[-1], "passed", 0.5)
    reliability.record("tests/unit/test_other.py::test_x", "passed", 1.0)  # not a row: ignored
    assert reliability.write_page()
    text = (tmp_path / "reliability.md").read_text()
    assert text.count("| passed | nothing |") == len(rows) - 1
    assert "| failed | **see the test's failure** |" in text and "(3) |" in text
