"""Publish: a versioned model into the registry, activated only if it passes the quality gate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recstream.serving.model_store import ModelArtifact, ModelRegistry


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    metric: str
    candidate: float | None
    active: float | None
    active_version: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gate(
    candidate: Mapping[str, float],
    active_doc: Mapping[str, Any] | None,
    metric: str,
    margin: float,
    force: bool = False,
    baseline: Mapping[str, float] | None = None,
) -> GateDecision:
    """Activate a candidate that beats the popularity `baseline` on the same test slice (first model
    included: users are better off with no model than with one that knows less than a chart) and is not
    worse than the active model by more than `margin` (relative).

    The active model was measured on its own holdout (older data), so small differences are noise:
    the margin absorbs them; a broken model (a bug, a bad parameter, a poisoned log) falls far below.
    """
    value = candidate.get(metric)
    active_version = active_doc.get("_id") if active_doc else None
    active_value = (active_doc or {}).get("metrics", {}).get(metric)
    if force:
        return GateDecision(True, "forced", metric, value, active_value, active_version)
    if value is None:
        return GateDecision(False, f"candidate has no {metric}", metric, None, active_value, active_version)
    popular = (baseline or {}).get(metric)
    if popular is not None and not value > popular:
        reason = f"{metric} {value:.4f} does not beat popularity {popular:.4f} on the test slice"
        return GateDecision(False, reason, metric, value, active_value, active_version)
    if active_doc is None:
        beats = f", above popularity {popular:.4f}" if popular is not None else ""
        return GateDecision(True, f"no active model{beats}", metric, value, None, None)
    if active_value is None:
        return GateDecision(True, f"active model has no {metric}", metric, value, None, active_version)
    floor = active_value * (1 - margin)
    if value < floor:
        reason = f"{metric} {value:.4f} < {floor:.4f} (active {active_value:.4f} - {margin:.0%})"
        return GateDecision(False, reason, metric, value, active_value, active_version)
    return GateDecision(
        True, f"{metric} {value:.4f} >= {floor:.4f}", metric, value, active_value, active_version
    )


def build_artifact(
    version: str,
    user_ids: list[str],
    item_ids: list[str],
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    has_user: np.ndarray,
    has_item: np.ndarray,
    meta: Mapping[str, Any],
) -> ModelArtifact:
    """Only users/videos ALS produced factors for are published (the others are unknown to the model:
    serving folds users in, and cannot score a video without a factor)."""
    users = np.flatnonzero(has_user)
    items = np.flatnonzero(has_item)
    return ModelArtifact(
        version=version,
        user_ids=[user_ids[i] for i in users],
        item_ids=[item_ids[i] for i in items],
        user_factors=user_factors[users],
        item_factors=item_factors[items],
        meta=meta,
    )


def publish(
    registry: ModelRegistry,
    artifact: ModelArtifact,
    document: Mapping[str, Any],
    metric: str,
    margin: float,
    force: bool,
) -> GateDecision:
    """Register the version (always: rejected models are kept for inspection), then activate it if
    the gate lets it through. Callers hold the training lock, so the active model cannot change
    between the gate's read and the switch."""
    active_version = registry.active_version()
    active_doc = registry.get(active_version) if active_version else None
    baseline = document.get("baseline", {}).get("popularity")
    decision = gate(document.get("metrics", {}), active_doc, metric, margin, force, baseline)
    status = "active" if decision.passed else "rejected"
    registry.register(artifact, {**document, "gate": decision.as_dict(), "status": status})
    if decision.passed:
        registry.activate(artifact)
    return decision
