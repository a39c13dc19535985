"""Training parameters: one frozen object with defaults, overridden from command-line flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from typing import Literal, get_args, get_origin, get_type_hints

from recstream.settings import Settings


def _p(default: object, help_text: str) -> object:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class TrainParams:
    """Everything that shapes a model. Stored with each version in the registry."""

    rank: int = _p(64, "latent factors per user and video (where the search starts)")
    reg_param: float = _p(
        0.5,
        "L2 regularisation; Spark multiplies it by each user's (video's) number of positive ratings "
        "(ALS-WR) and serving's fold-in does the same",
    )
    alpha: float = _p(5.0, "confidence slope: c = 1 + alpha * |r| for an aggregated engagement r")
    max_iter: int = _p(10, "ALS sweeps (each solves all users, then all videos)")
    blocks: int = _p(
        0,
        "user and item blocks of Spark's ALS; 0 = the default parallelism (cores): fewer, larger "
        "blocks shuffle fewer factors, one per core is fastest on one machine",
    )
    seed: int = _p(42, "factor initialisation seed (same data + same seed = same model)")
    checkpoint_interval: int = _p(10, "checkpoint the factors every N sweeps (cuts the RDD lineage)")
    storage_level: str = _p("MEMORY_AND_DISK", "Spark storage level of ALS's intermediate RDDs")
    tune_trials: int = _p(
        8, "ALS parameter sets tried per round (1 = the flags as given); as RECSTREAM_TRAIN_TUNE_TRIALS"
    )
    tune_max_events: int = _p(
        500_000, "newest events the tuning reads to the driver; as RECSTREAM_TRAIN_TUNE_MAX_EVENTS"
    )
    window_days: float = _p(0.0, "train on the last N days of the log only (0 = all of it)")
    gate_metric: Literal["ndcg", "map", "recall", "precision"] = _p(
        "ndcg", "metric (at 10) the quality gate compares: the model must beat popularity on it"
    )
    gate_margin: float = _p(
        0.05,
        "refuse to activate a model whose gate metric is below the active one's by more than this fraction",
    )
    fast_skip_ms: int = _p(2000, "a view shorter than this is a fast skip; as RECSTREAM_FAST_SKIP_MS")

    def __post_init__(self) -> None:
        checks = {
            "rank": self.rank >= 1,
            "reg_param": self.reg_param >= 0,
            "alpha": self.alpha >= 0,
            "max_iter": self.max_iter >= 1,
            "blocks": self.blocks >= 0,
            "tune_trials": self.tune_trials >= 1,
            "tune_max_events": self.tune_max_events >= 100,
            "gate_margin": 0 <= self.gate_margin <= 1,
            "window_days": self.window_days >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid training parameters: {', '.join(bad)}")

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_DEFAULTS = TrainParams()
# The engagement definition is the streaming side's: it comes from the settings unless a flag says.
_FROM_SETTINGS = {
    "fast_skip_ms": "fast_skip_ms",
    "tune_trials": "train_tune_trials",
    "tune_max_events": "train_tune_max_events",
}


def add_param_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainParams field (`--reg-param` for reg_param), defaulting to the dataclass."""
    group = parser.add_argument_group("model parameters")
    hints = get_type_hints(TrainParams)
    for f in fields(TrainParams):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(_DEFAULTS, f.name)
        shown = "settings" if f.name in _FROM_SETTINGS else default
        kwargs: dict[str, object] = {"dest": f.name, "help": f"{f.metadata['help']} (default: {shown})"}
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, **kwargs)
        elif get_origin(hints[f.name]) is Literal:
            group.add_argument(flag, choices=get_args(hints[f.name]), default=default, **kwargs)
        else:
            value_default = None if f.name in _FROM_SETTINGS else default
            group.add_argument(flag, type=type(default), default=value_default, metavar="N", **kwargs)


def params_from_args(args: argparse.Namespace, settings: Settings) -> TrainParams:
    values = {f.name: getattr(args, f.name) for f in fields(TrainParams)}
    for name, setting in _FROM_SETTINGS.items():
        if values[name] is None:
            values[name] = getattr(settings, setting)
    return TrainParams(**values)
