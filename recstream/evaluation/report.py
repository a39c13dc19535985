"""The run's results as JSON (`results.json`) and one self-contained HTML page (`report.html`)."""

from __future__ import annotations

import json
import math
import time
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from recstream.evaluation import metrics, svg
from recstream.evaluation.data import Dataset
from recstream.evaluation.runner import TUNE_METRIC, RunResult


def activity_buckets(train_rows: np.ndarray, n: int = 4) -> list[tuple[str, np.ndarray]]:
    """Users split by how many training rows they have, at the quartiles (fewer when they tie)."""
    if len(train_rows) == 0:
        return []
    edges = np.unique(np.quantile(train_rows, np.linspace(0, 1, n + 1)).round().astype(int))
    out = []
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        mask = (train_rows >= lo) & ((train_rows < hi) if i < len(edges) - 2 else (train_rows <= hi))
        if mask.any():
            top = hi - 1 if i < len(edges) - 2 else hi
            out.append((f"{lo}-{top} rows", mask))
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def payload(ds: Dataset, result: RunResult, meta: dict[str, Any]) -> dict[str, Any]:
    p, t = result.protocol, result.test
    buckets = activity_buckets(t.train_rows)
    models = {}
    for name, r in result.models.items():
        summary = {}
        for m, values in r.per_user.items():
            mean, ci = metrics.mean_ci(values)
            summary[m] = {"mean": mean, "ci95": ci}
        models[name] = {
            "params": r.params,
            f"validation_{TUNE_METRIC}": r.validation,
            "metrics": summary,
            "coverage@10": r.coverage,
            "fit_s": r.fit_s,
            "tune_s": r.tune_s,
            "rank_s": r.rank_s,
            "trials": [{"params": tr.params, "validation": tr.value, "fit_s": tr.fit_s} for tr in r.trials],
            "buckets": {
                label: {m: float(v[mask].mean()) for m, v in r.per_user.items()} for label, mask in buckets
            },
        }
    return _clean(
        {
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **meta,
            "dataset": {
                "name": ds.name,
                "rows": ds.n_rows,
                "events": len(ds.event_type),
                "users": ds.n_users,
                "items": ds.n_items,
                **meta.get("dataset", {}),
            },
            "protocol": {
                "name": p.name,
                "params": p.params,
                "train_rows": len(p.test.train),
                "test_rows": len(p.test.test),
                "validation_train_rows": len(p.validation.train),
                "validation_rows": len(p.validation.test),
                "test_users": len(t.users),
                "validation_users": len(result.validation.users),
                "candidates": t.n_candidates,
            },
            "tuning": {
                "metric": TUNE_METRIC,
                "on": "validation split carved out of the training rows",
                "method": "coordinate ascent from the served / library defaults",
                "blend": (
                    "hybrid: a training round's rule (runner.blend_rule) on validation: of the item-CF x "
                    "trending weight pairs beside ALS at least as accurate (NDCG@10) as the best single "
                    "source, the most popularity-debiased NDCG@10; its trials' values are that metric"
                ),
            },
            "buckets": [{"label": label, "users": int(mask.sum())} for label, mask in buckets],
            "models": models,
        }
    )


def write(out_dir: Path, data: dict[str, Any]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "results.json", out_dir / "report.html"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    html_path.write_text(html(data))
    return json_path, html_path


LABELS = {
    "hybrid": "hybrid (served default)",
    "hybrid-defaults": "hybrid, built-in weights",
    "implicit-als": "implicit-als (peer)",
    "ease": "ease (reference, not served)",
}
NOTES = {
    "hybrid": " (**served default**)",
    "hybrid-defaults": " (built-in weights)",
    "implicit-als": " (peer)",
    "ease": " (reference, not served)",
}
TABLE_METRICS = ("ndcg@10", "ndcg@20", "hr@10", "hr@20", "recall@10", "precision@10", "map")


def markdown_table(data: dict[str, Any]) -> str:
    """The results as the markdown table docs/evaluation.md shows (written by `--docs`, not by hand)."""
    head = [
        "model",
        *[m.replace("precision", "prec") for m in TABLE_METRICS],
        "coverage@10",
        "fit s",
        "tuning s (trials)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in data["models"].items():
        cells = [f"`{name}`" + NOTES.get(name, "")]
        for k in TABLE_METRICS:
            s = m["metrics"][k]
            ci = f" ± {s['ci95']:.3f}" if k == "ndcg@10" and s["ci95"] is not None else ""
            cells.append(f"{_fmt(s['mean'], 3)}{ci}")
        cells += [_fmt(m["coverage@10"], 3), _fmt(m["fit_s"], 1), f"{m['tune_s']:.0f} ({len(m['trials'])})"]
        lines.append("| " + " | ".join(cells) + " |")
    p = data["protocol"]
    lines.append("")
    lines.append(
        f"`{data.get('command', 'recstream evaluate')}` (grid {data.get('grid')}), {data['created_at']}: "
        f"{p['test_users']:,} test users ranked over {p['candidates']:,} candidates (protocol "
        f"`{json.dumps(p.get('params', {}), sort_keys=True)}`); ± is the 95 % "
        "interval of the mean over users. Chosen on validation: "
        + "; ".join(
            f"{n} `{json.dumps(m['params'], sort_keys=True)}`"
            for n, m in data["models"].items()
            if m["params"]
        )
        + "."
    )
    return "\n".join(lines)


def update_docs(path: Path, data: dict[str, Any]) -> str:
    """Replace the block between `<!-- evaluate:KEY -->` and `<!-- /evaluate:KEY -->` in `path` (KEY:
    dataset-protocol), or append one; returns the key."""
    key = f"{data['dataset']['name']}-{data['protocol']['name']}"
    start, end = f"<!-- evaluate:{key} -->", f"<!-- /evaluate:{key} -->"
    block = f"{start}\n{markdown_table(data)}\n{end}"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    return key


def _fmt(v: Any, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def html(data: dict[str, Any]) -> str:
    models = data["models"]
    names = list(models)
    ds, p = data["dataset"], data["protocol"]
    head = ["model", *metrics.METRICS, "coverage@10", f"val {TUNE_METRIC}", "fit s", "tuning s"]
    rows = []
    for name, m in models.items():
        cells = [f"<td>{escape(LABELS.get(name, name))}</td>"]
        for k in metrics.METRICS:
            s = m["metrics"][k]
            ci = "" if s["ci95"] is None else f' <span class="ci">±{s["ci95"]:.3f}</span>'
            cells.append(f"<td>{_fmt(s['mean'])}{ci}</td>")
        cells += [
            f"<td>{_fmt(m['coverage@10'], 3)}</td>",
            f"<td>{_fmt(m[f'validation_{TUNE_METRIC}'])}</td>",
            f"<td>{_fmt(m['fit_s'], 1)}</td>",
            f"<td>{_fmt(m['tune_s'], 1)}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    params = "".join(
        f"<tr><td>{escape(n)}</td><td><code>{escape(json.dumps(m['params']))}</code></td>"
        f"<td>{len(m['trials'])}</td></tr>"
        for n, m in models.items()
    )
    charts = [
        svg.grouped_bars(
            ["NDCG@10"],
            {n: [models[n]["metrics"]["ndcg@10"]["mean"] or 0.0] for n in names},
            "NDCG@10 by model (whiskers: 95 % CI)",
            errors={n: [models[n]["metrics"]["ndcg@10"]["ci95"] or 0.0] for n in names},
        ),
        svg.grouped_bars(
            names,
            {
                "HR@10": [models[n]["metrics"]["hr@10"]["mean"] or 0.0 for n in names],
                "Recall@10": [models[n]["metrics"]["recall@10"]["mean"] or 0.0 for n in names],
                "Precision@10": [models[n]["metrics"]["precision@10"]["mean"] or 0.0 for n in names],
            },
            "HR@10, Recall@10, Precision@10 by model",
        ),
    ]
    labels = [b["label"] for b in data["buckets"]]
    if labels:
        charts.append(
            svg.grouped_bars(
                [f"{b['label']} ({b['users']} users)" for b in data["buckets"]],
                {n: [models[n]["buckets"][lab]["ndcg@10"] for lab in labels] for n in names},
                "NDCG@10 by user activity (training rows per user)",
            )
        )
    charts.append(
        svg.hbars(
            names,
            [models[n]["fit_s"] or 0.0 for n in names],
            "Training time (fit on the whole training split; hybrid = its components)",
        )
    )
    charts.append(
        svg.hbars(
            names, [models[n]["tune_s"] or 0.0 for n in names], "Tuning time on validation (all trials)"
        )
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>recstream evaluate: {escape(ds["name"])} / {escape(p["name"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.ci {{ color: #888; font-size: 11px; }} code {{ font-size: 12px; }}
figure {{ margin: 1.5em 0; }}
table.params td {{ text-align: left; }}
</style></head><body>
<h1>{escape(ds["name"])}: {escape(p["name"])} protocol</h1>
<p>{ds["rows"]:,} rows ({ds["events"]:,} events), {ds["users"]:,} users, {ds["items"]:,} items.
Protocol parameters <code>{escape(json.dumps(p["params"]))}</code>: {p["train_rows"]:,} training rows,
{p["test_rows"]:,} test rows; {p["test_users"]:,} test users ranked over the same {p["candidates"]:,}
candidate items (items with a training row, minus each user's own training items).
Parameters were chosen on a validation split ({p["validation_train_rows"]:,} / {p["validation_rows"]:,}
rows) carved out of the training rows, by {escape(data["tuning"]["method"])}, on
{escape(data["tuning"]["metric"])}; the test rows were never used to choose anything.</p>
<h2>Results on the test split</h2>
<table><tr>{"".join(f"<th>{escape(h)}</th>" for h in head)}</tr>
{"".join(rows)}</table>
<p>± = half-width of the 95 % confidence interval of the mean over users. MAP divides by all of a
user's relevant items (Microsoft Recommenders' definition).</p>
{"".join(f"<figure>{c}</figure>" for c in charts)}
<h2>Chosen parameters</h2>
<table class="params"><tr><th>model</th><th>parameters</th><th>trials</th></tr>{params}</table>
<p>Command: <code>{escape(data.get("command", ""))}</code> &middot; {escape(data["created_at"])}</p>
</body></html>
"""
