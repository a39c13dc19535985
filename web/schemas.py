"""The JSON the API answers, as pydantic models: the source of `/openapi.json`'s response schemas.

Nothing here validates a response at run time (the handlers build plain dicts, on the hot path); the
models describe what they build, and `tests/integration/test_openapi.py` checks every answer of a live
worker and web role against them. So: `extra="forbid"` everywhere a handler builds a fixed set of keys
(a key added to a handler and not here fails that test), optional fields only where a handler really
leaves a key out, and free-form mappings only where the content is free-form (a model's metrics).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from recstream.records import Interaction, Video
from recstream.web.handlers import MAX_EVENTS, MAX_VIDEOS, STRATEGIES

Strategy = Literal[STRATEGIES]  # type: ignore[valid-type] - the handlers' own tuple, not a copy of it
Rate = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
EpochMs = Annotated[int, Field(description="epoch milliseconds")]
# Why a video was recommended (recstream.serving.recommend): the history entry that contributed most, or a source.
Reason = Annotated[str, Field(pattern=r"^(als|trending|new|random|because you watched \S+)$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors ----------------------------------------------------------------------------------
class ErrorResponse(Strict):
    """Every 4xx/5xx body of the client API: what went wrong, and which input when one is to blame."""

    error: str
    field: str | None = Field(default=None, description="the request field at fault")
    detail: str | None = Field(default=None, description="the underlying error (parser, Redis)")
    limit: int | None = Field(default=None, description="413: the most items a request may carry")
    limit_bytes: int | None = Field(
        default=None, description="413: the largest body accepted (max_body_bytes)"
    )


class FieldError(Strict):
    index: int | None = Field(
        description="position of the item in the request (0 for a single object); null: the id in the path"
    )
    field: str | None = Field(description="dotted path of the field in that item; null: the item itself")
    message: str


class ValidationErrorResponse(Strict):
    """422 of POST /events and /videos (every invalid field of every item: nothing was produced), and of a
    DELETE whose path id is invalid."""

    error: str
    details: list[FieldError]


class UnknownVideo(Strict):
    error: str
    video_id: str


class DashboardError(Strict):
    """A dashboard view's error (Faust's own error body: `{"error": reason}`)."""

    error: str
    detail: str | None = None


# --- ingestion -------------------------------------------------------------------------------
class InteractionBatch(Strict):
    events: list[Interaction] = Field(max_length=MAX_EVENTS)


class VideoBatch(Strict):
    videos: list[Video] = Field(max_length=MAX_VIDEOS)


class Accepted(Strict):
    accepted: Count = Field(description="records Kafka acknowledged (all of the request's)")


class VideoDeleted(Strict):
    video_id: str
    deleted: Literal[True]


class UserErased(Strict):
    user_id: str
    erased: Literal[True]


# --- serving ---------------------------------------------------------------------------------
class RecommendedItem(Strict):
    video_id: str
    score: float
    reasons: list[Reason]


class RecommendationsResponse(Strict):
    user_id: str
    items: list[RecommendedItem] = Field(description="best first; never a video the user engaged with")
    model_version: str | None = Field(description="the ALS model that scored them (null: none used)")
    strategy: Strategy = Field(
        description="the strategy that served: `?strategy=`, else the user's A/B bucket"
    )
    degraded: str | None = Field(
        default=None,
        description="present when Redis was unreachable: the user's "
        "history was unknown, so the list may repeat what they saw",
    )


class TrendingItem(Strict):
    video_id: str
    score: float
    views: Count
    watch_time_ms: Count
    completion_rate: Rate
    likes: Count


class TrendingResponse(Strict):
    items: list[TrendingItem]


class Counters(Strict):
    """A video's engagement counters and the rates derived from them (recstream.scoring.stats_view)."""

    views: Count
    watch_time_ms: Count
    completions: Count
    likes: Count
    shares: Count
    comments: Count
    skips: Count
    follows: Count
    avg_watch_time_ms: Rate
    completion_rate: Rate
    watch_ratio_hist: list[Count] = Field(description="views by watch ratio, 10% buckets, the last one 100%+")


class StoredWindow(Counters):
    start_ms: EpochMs
    end_ms: EpochMs


class Window(StoredWindow):
    current: bool = Field(description="false: the window ended and saw no event since")


class VideoStats(Strict):
    """GET /videos/{video_id}/stats. A video known only from its metadata (no event yet) has the same
    document, all zero, with the current windows."""

    video_id: str
    views: Count
    watch_time_ms: Count
    avg_watch_time_ms: Rate
    completion_rate: Rate
    likes: Count
    shares: Count
    comments: Count
    skips: Count
    follows: Count | None = None
    completions: Count | None = None
    watch_ratio_hist: list[Count] | None = None
    duration_ms: int | None = None
    last_event_ms: EpochMs | None = None
    window_short: Window | None = None
    window_long: Window | None = None


class SimilarItem(Strict):
    video_id: str
    score: float


class SimilarResponse(Strict):
    video_id: str
    items: list[SimilarItem] = Field(description="item-CF neighbours, best first")


class Dependencies(Strict):
    redis: str = Field(description='"ok" or the error')
    mongo: str
    kafka: str | None = Field(default=None, description="the worker's producer (worker only)")


class StateAges(Strict):
    """Seconds since each part of the serving state was refreshed (null: never) = serving.PARTS."""

    catalog: float | None
    neighbours: float | None
    trending: float | None
    fresh: float | None
    model: float | None


class ServingStateHealth(Strict):
    loaded: bool
    age_s: StateAges
    model_version: str | None
    videos: Count
    neighbour_lists: Count


class Health(Strict):
    """200 when every dependency is ok (and, on the web role, the serving state loaded), else 503."""

    status: Literal["ok", "degraded"]
    role: Literal["web", "worker"]
    pid: int | None = Field(default=None, description="web role only: which process answered")
    dependencies: Dependencies
    serving_state: ServingStateHealth
    rebalancing: bool | None = Field(default=None, description="worker only")
    assigned_partitions: dict[str, Count] | None = Field(default=None, description="worker only: per topic")


class OpenApiDocument(BaseModel):
    """This document (the OpenAPI metaschema is not repeated here)."""

    model_config = ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


# --- dashboard (worker only) -------------------------------------------------------------------
class ByTypeCount(Strict):
    view: Count
    like: Count
    share: Count
    comment: Count
    skip: Count
    follow: Count


class ByTypeSeries(Strict):
    view: list[float]
    like: list[float]
    share: list[float]
    comment: list[float]
    skip: list[float]
    follow: list[float]


class OverviewSeries(Strict):
    t: list[int] = Field(description="bucket starts, epoch seconds")
    events_per_s: ByTypeSeries
    views: list[float]
    avg_watch_time_ms: list[float | None]
    completion_rate: list[float | None]
    like_rate: list[float | None]
    share_rate: list[float | None]


class OverviewTotals(Strict):
    events: Count
    by_type: ByTypeCount
    events_per_s: float
    views: Count
    active_users: Count
    avg_watch_time_ms: float | None
    completion_rate: float | None
    like_rate: float | None
    share_rate: float | None


class CurrentRate(Strict):
    events_per_s: float
    window_s: int


class ActiveUsers(Strict):
    minutes: list[int] = Field(description="minute starts, epoch seconds")
    users: list[Count]


class Overview(Strict):
    since_s: int
    until_s: int
    step_s: int
    series: OverviewSeries
    totals: OverviewTotals
    current: CurrentRate
    active_users: ActiveUsers


class VideoMeta(Strict):
    caption: str
    creator_id: str | None
    hashtags: list[str]
    category: str | None
    duration_ms: int | None
    created_at: EpochMs | None


class Trend(Strict):
    direction: Literal["up", "down", "flat", "new"]
    recent_views_per_min: float
    views_per_min: float


class DashboardTrendingItem(VideoMeta):
    rank: int = Field(ge=1)
    video_id: str
    score: float
    views: Count
    watch_time_ms: Count
    avg_watch_time_ms: Rate
    completion_rate: Rate
    likes: Count
    shares: Count
    trend: Trend


class DashboardTrending(Strict):
    items: list[DashboardTrendingItem]


class StoredStats(Counters):
    """A video's stats document as the engagement agent stores it (no `current` in its windows)."""

    video_id: str
    duration_ms: int | None = None
    last_event_ms: EpochMs | None = None
    window_short: StoredWindow | None = None
    window_long: StoredWindow | None = None


class WatchDistribution(Strict):
    source: Literal["histogram", "completions"]
    labels: list[str]
    views: list[int]


class EngagementWindow(Strict):
    name: Literal["lifetime", "long", "short"]
    start_ms: EpochMs | None = None
    end_ms: EpochMs | None = None
    current: bool | None = None
    views: Count
    completion_rate: Rate
    avg_watch_time_ms: Rate
    like_rate: float | None
    share_rate: float | None
    comment_rate: float | None
    skip_rate: float | None


class Timeline(Strict):
    step_s: int
    t: list[int]
    views: list[int]
    likes: list[int]
    shares: list[int]
    comments: list[int]
    skips: list[int]
    completion_rate: list[float | None]
    engagement_rate: list[float | None]


class SimilarWithMeta(VideoMeta):
    video_id: str
    score: float


class VideoAnalytics(Strict):
    video_id: str
    meta: VideoMeta | None
    stats: StoredStats | None
    trend: Trend
    watch_time: WatchDistribution
    windows: list[EngagementWindow]
    timeline: Timeline | None
    similar: list[SimilarWithMeta]


class VideosMeta(Strict):
    videos: dict[str, VideoMeta] = Field(description="the known ones among the ids asked for")


class HistoryEntry(VideoMeta):
    video_id: str
    ts: EpochMs
    weight: float


class UserHistory(Strict):
    user_id: str
    seen: int = Field(description="distinct videos in the seen filter (estimate; -1: the filter is full)")
    overexposed: list[str] = Field(
        description="videos shown to the user max_unengaged_impressions times "
        "without engagement: not shown to them again"
    )
    history: list[HistoryEntry] = Field(description="newest first")


class ModelVersion(Strict):
    version: str | None
    status: str | None
    created_at: str | int | float | None
    activated_at: str | int | float | None
    metrics: dict[str, Any]
    baseline: dict[str, Any]
    data: dict[str, Any]
    params: dict[str, Any]
    gate: Any
    timings: dict[str, Any]
    training_s: float
    blend: dict[str, float] = Field(
        description="the blend weights published with the model (serving's unless pinned)"
    )
    served: dict[str, Any] = Field(description="the served blend's metrics on the test slice")
    tuning: dict[str, Any] = Field(description="the training round's search: protocol, sizes, ALS trials")


class MeanCI(Strict):
    mean: float | None = Field(description="mean over the bucket's users")
    ci95: float | None = Field(description="half-width of its 95 % confidence interval")


class ClosedLoopRow(Strict):
    strategy: str | None
    users: int | None
    impressions: int | None
    watch_time_ms: MeanCI | None
    completion_rate: MeanCI | None
    like_rate: MeanCI | None
    taste: MeanCI | None
    click_through: MeanCI | None = None
    repeat_exposure: MeanCI | None = None


class ClosedLoop(Strict):
    run_id: str | None
    created_at: str | int | float | None
    config: dict[str, Any] | None
    strategies: list[ClosedLoopRow]


class ModelRegistry(Strict):
    namespace: str
    active_version: str | None
    state: str
    active: ModelVersion | None
    versions: list[ModelVersion] = Field(description="newest first")
    closed_loop: ClosedLoop | None
    error: str | None = Field(description="why the registry (MongoDB) could not be read")


class WorkerInfo(Strict):
    port: int
    rebalancing: bool
    assigned_partitions: dict[str, Count]


class PartitionLag(Strict):
    topic: str
    partition: int
    lag: Count


class DeadLetter(Strict):
    ts: Any
    source_topic: Any
    partition: Any
    offset: Any
    key: Any
    reason: Any
    value: str


class DeadLetters(Strict):
    topic: str
    total: int | None
    recent: list[DeadLetter]
    error: str | None = None


class Freshness(Strict):
    window_s: int | None
    count: Count
    p50_ms: float | None
    p99_ms: float | None


class Pipeline(Strict):
    status: Literal["ok", "degraded"]
    dependencies: Dependencies
    worker: WorkerInfo
    consumer_lag: list[PartitionLag]
    lag_total: Count
    dead_letters: DeadLetters
    freshness: Freshness | None
    events_processed: dict[str, Count]
