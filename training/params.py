"""Training parameters: one frozen object with defaults, overridden from command-line flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Literal, get_args, get_origin, get_type_hints

Source = Literal["kafka", "dataset"]


@dataclass(frozen=True)
class TrainParams:
    """Everything that shapes a model. Stored with each version in the registry."""

    rank: int = 64
    """Latent factors per user and video."""
    reg_param: float = 0.05
    """L2 regularisation. Spark multiplies it by each user's (video's) count of positive ratings
    (ALS-WR); serving's fold-in does the same, so the two agree."""
    alpha: float = 5.0
    """Confidence slope: c = 1 + alpha * |r| for an aggregated engagement r."""
    max_iter: int = 10
    """ALS sweeps (each solves all users, then all videos)."""
    blocks: int = 0
    """User and item blocks of Spark's ALS; 0 = the cluster's default parallelism (cores). Fewer,
    larger blocks mean less shuffling of factors: on one machine, one block per core is fastest."""
    seed: int = 42
    """Factor initialisation seed (same data + same seed = same model)."""
    checkpoint_interval: int = 10
    """Checkpoint the factor RDDs every N sweeps (cuts the lineage; avoids StackOverflowError)."""
    storage_level: str = "MEMORY_AND_DISK"
    """Spark storage level of ALS's intermediate RDDs."""
    holdout: int = 1
    """Each eligible user's latest N videos are held out for evaluation."""
    min_user_videos: int = 3
    """Only users with at least this many videos give a holdout (the rest all go to training)."""
    eval_k: int = 10
    """Cut-off of the ranking metrics."""
    eval_max_users: int = 20_000
    """Evaluate on at most this many holdout users (a fixed-seed sample)."""
    window_days: float = 0.0
    """Train only on the last N days of the log (0 = all of it)."""
    refit: bool = True
    """After evaluating, refit on all the data (the holdout too) before publishing."""
    gate_metric: Literal["ndcg", "map", "recall", "precision"] = "ndcg"
    """Metric (at eval_k) the quality gate compares."""
    gate_margin: float = 0.05
    """Refuse to activate a model whose gate metric is below the active one's by more than this
    fraction (0.05 = 5 % relative)."""
    completion_ratio: float = 0.9
    """Same meaning as the streaming side's setting (engagement weights must agree)."""
    fast_skip_ms: int = 2000
    """A view shorter than this is a fast skip (negative feedback), as on the streaming side."""

    def __post_init__(self) -> None:
        checks = {
            "rank": self.rank >= 1,
            "reg_param": self.reg_param >= 0,
            "alpha": self.alpha >= 0,
            "max_iter": self.max_iter >= 1,
            "blocks": self.blocks >= 0,
            "holdout": self.holdout >= 0,
            "min_user_videos": self.min_user_videos >= self.holdout + 1,
            "eval_k": self.eval_k >= 1,
            "gate_margin": 0 <= self.gate_margin <= 1,
            "window_days": self.window_days >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training parameters: {', '.join(bad)} ({self})")

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_DEFAULTS = TrainParams()


def add_param_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainParams field (`--reg-param` for reg_param), defaulting to the dataclass."""
    group = parser.add_argument_group("model parameters (defaults in recstream/training/params.py)")
    hints = get_type_hints(TrainParams)
    for f in fields(TrainParams):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(_DEFAULTS, f.name)
        if isinstance(default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default)
        elif get_origin(hints[f.name]) is Literal:
            group.add_argument(flag, dest=f.name, choices=get_args(hints[f.name]), default=default)
        else:
            group.add_argument(flag, dest=f.name, type=type(default), default=default, metavar="N")


def params_from_args(args: argparse.Namespace) -> TrainParams:
    return TrainParams(**{f.name: getattr(args, f.name) for f in fields(TrainParams)})
