"""recstream's own log: JSON lines of `Interaction` records (what `recstream train --dataset` reads, a
dump of the interactions topic, the simulator's output with `recstream simulate --out`).

Consecutive events of the same user, video and time form one row (a view and the like that came with
it), so the protocols never split them. Each line is validated with the same schema as the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from recstream.datasets.base import LoadReport, Row, open_text
from recstream.records import Interaction, Video


def rows(path: Path, report: LoadReport) -> Iterator[tuple[int, Row]]:
    row: Row = []
    start = 0
    with open_text(path) as f:
        for line, text in enumerate(f, 1):
            if not text.strip():
                continue
            report.rows += 1
            try:
                event = Interaction.model_validate_json(text)
            except ValidationError as exc:
                report.bad(line, f"not an Interaction: {exc.errors()[0]['msg']}")
                continue
            if row and (event.user_id, event.video_id, event.ts) != (
                row[0].user_id,
                row[0].video_id,
                row[0].ts,
            ):
                yield start, row
                row = []
            if not row:
                start = line
            row.append(event)
    if row:
        yield start, row


def videos(path: Path, report: LoadReport) -> Iterator[Video]:
    return iter(())
