"""One settings object for the whole product, read from `RECSTREAM_*` environment variables once."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def source_checkout(parent: Path | None = None) -> Path | None:
    """The repository root when recstream runs from a source checkout (an editable install or the
    folder itself), else None: an installed package lives in site-packages, whose parent holds no
    pyproject.toml declaring recstream."""
    parent = _PACKAGE_PARENT if parent is None else parent
    pyproject = parent / "pyproject.toml"
    try:
        return parent if 'name = "recstream"' in pyproject.read_text(encoding="utf-8") else None
    except OSError:
        return None


def default_local_dir(parent: Path | None = None, environ: dict[str, str] | None = None) -> Path:
    """`<repo>/.local` in a source checkout (what `make install` fills and `make clean-data` empties);
    for an installed package the user's data directory, `$XDG_DATA_HOME/recstream` (by default
    `~/.local/share/recstream`), never a folder inside site-packages."""
    repo = source_checkout(parent)
    if repo is not None:
        return repo / ".local"
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(base) / "recstream"


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***` (each of a comma-separated list), for logs and status
    lines: `redis://:s3cret@cache:6379/0` -> `redis://:***@cache:6379/0`."""
    out = []
    for part in url.split(","):
        if "://" not in part or "@" not in part:
            out.append(part)
            continue
        split = urlsplit(part)
        userinfo, _, hostport = split.netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        out.append(urlunsplit(split._replace(netloc=f"{user}{':***' if sep else ''}@{hostport}")))
    return ",".join(out)


class Settings(BaseSettings):
    """Every knob recstream has. Each field is `RECSTREAM_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="RECSTREAM_", frozen=True, extra="ignore")

    # --- where things are ---------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated. The local broker listens here by default."""
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = "PLAINTEXT"
    """How every Kafka client of recstream connects (aiokafka, Faust, Spark's Kafka source; built in one
    place, `recstream.kafka.config`). SASL_*: authenticate with `kafka_username` / `kafka_password`."""
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    """SASL mechanism when `kafka_security_protocol` is SASL_PLAINTEXT or SASL_SSL."""
    kafka_username: str | None = None
    """SASL user name (needed with SASL_PLAINTEXT / SASL_SSL)."""
    kafka_password: SecretStr | None = None
    """SASL password; never logged."""
    kafka_ssl_cafile: Path | None = None
    """PEM file of the CA that signed the brokers' certificates (SSL / SASL_SSL; default: the system's)."""
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    """Redis URL: the hot cache (neighbour lists, trending, the active model). A password goes in it
    (`redis://:PASSWORD@host:6379/0`, or `redis://USER:PASSWORD@...` with an ACL user); it is never
    logged: status lines and the settings' repr show it as `***`."""
    mongo_url: str = Field(default="mongodb://127.0.0.1:27017/", repr=False)
    """MongoDB URL: the durable store (catalog, per-video stats, model registry). Credentials go in it
    (`mongodb://USER:PASSWORD@host:27017/?authSource=admin`), never logged either."""
    mongo_db: str = "recstream"
    """MongoDB database name."""
    local_dir: Path = Field(default_factory=default_local_dir)
    """Cache of installed artefacts (Kafka jars, Spark's Kafka connector in `spark-jars/`, the
    MongoDB-protocol server). Default: `.local` in a source checkout; for an installed package the
    user's data directory (`$XDG_DATA_HOME/recstream`, else `~/.local/share/recstream`)."""
    data_dir: Path = Field(default_factory=lambda data: data["local_dir"] / "data")
    """Where local services keep data and logs, and where the Faust worker keeps RocksDB. Default:
    `<local_dir>/data`: `.local/data` in a source checkout."""

    # --- which local services `recstream services up` manages ---------------------------
    manage_kafka: bool | None = None
    """Start a local Kafka broker. Default: only when `kafka_bootstrap` is on 127.0.0.1:9092."""
    manage_redis: bool | None = None
    """Start a local Redis. Default: only when `redis_url` points at 127.0.0.1:6379."""
    manage_mongo: bool | None = None
    """Start a local MongoDB-protocol server. Default: only when `mongo_url` is 127.0.0.1:27017."""
    kafka_heap: str = "768m"
    """JVM heap of the local broker."""

    # --- topics -------------------------------------------------------------------------
    topic_prefix: str = "recstream"
    """Every topic name starts with this, so several deployments can share a cluster."""
    interactions_partitions: int = Field(default=8, ge=1)
    """Partitions of the interactions topic (keyed by user)."""
    covisit_partitions: int = Field(default=8, ge=1)
    """Partitions of the co-visitation topic (keyed by video)."""
    replication_factor: int = Field(default=1, ge=1)
    """Replication factor of the topics recstream creates."""

    # --- input --------------------------------------------------------------------------
    max_future_skew_s: float = Field(default=300, ge=0)
    """How far ahead of the server's clock an event's `ts` (a video's `created_at`) may be. Further ahead:
    HTTP refuses it (422); a message written straight to the topic is applied at its append time plus
    this skew (deterministic on replay). Any past time is accepted (replays): trending decays it away."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Largest request body the write endpoints read (413 above it): 10,000 events of the longest ids
    allowed fit in 8 MiB, so the batch limit, not the body limit, binds on any valid batch."""

    # --- access -------------------------------------------------------------------------
    write_api_key: SecretStr | None = None
    """Key for POST /events and /videos (`X-API-Key` or `Authorization: Bearer`). Needed, with the read
    key, whenever a server binds beyond loopback; never logged."""
    read_api_key: SecretStr | None = None
    """Key for per-user reads (a user's history, dead-letter payloads); the write key is accepted too."""
    public_reads: bool = True
    """Recommendations, trending, stats, similar and the dashboard open to anyone who can reach the port;
    off: they need the read key too."""
    write_rate_limit_per_s: float = Field(default=100_000, ge=0)
    """Events per second one client address may write (429 with Retry-After above it; 0: no limit)."""
    write_rate_limit_burst: float = Field(default=100_000, ge=1)
    """Events one client may write at once before the rate applies."""
    cors_origins: list[str] = []
    """Browser origins allowed to call the API (CORS), e.g. '["https://studio.example.com"]'; none by
    default, so a web page elsewhere can neither read an answer nor post (writes need a preflight)."""

    # --- the Faust worker ---------------------------------------------------------------
    app_id: str = "recstream"
    """Faust app id: also the consumer group and the prefix of changelog topics."""
    web_host: str = "127.0.0.1"
    """Interface the worker's HTTP views bind to."""
    web_port: int = 6066
    """Port of the worker's HTTP views."""
    serve_port: int = 8000
    """Port of the web role (`recstream web`), which serves the API without running agents."""
    table_standby_replicas: int = Field(default=0, ge=0)
    """Faust standby replicas per table (warm copies on other workers for fast failover)."""
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    """Faust processing guarantee; exactly_once uses Kafka transactions."""
    event_loop: Literal["aio", "uvloop"] = "uvloop"
    """The worker's event loop: uvloop (libuv) runs the same asyncio code with less overhead per future,
    task and socket operation, which is most of a worker's time outside the agents' own work."""
    log_level: Literal["debug", "info", "warn", "error", "crit"] = "info"
    """Worker log level."""
    gil_switch_interval_ms: float = Field(default=0.5, gt=0)
    """How long a worker's busy thread may hold the GIL while another waits for it (Python's default is
    5 ms). Faust's Kafka consumer runs in a thread of its own and needs the GIL for every step of a fetch
    (every socket wait releases it); while the agents kept the main thread busy, each step waited up to
    5 ms, so a fetch took hundreds of ms and a user's event sat at the broker meanwhile. Freshness p99 at
    5,000 events/s went from 355-782 ms to 116 ms (docs/architecture.md, "The consumer's thread")."""

    # --- streaming algorithms -----------------------------------------------------------
    history_length: int = Field(default=50, ge=1)
    """Engagements kept per user (newest first)."""
    covisit_lookback: int = Field(default=10, ge=1, le=500)
    """How many of a user's previous videos are paired with a new engagement."""
    covisit_recency: float = Field(default=0.8, gt=0, le=1)
    """Pair weight multiplier per step back in the user's history (w**m)."""
    covisit_both_ways: bool = True
    """Co-visitation pairs count both ways: "watched A, then B" also makes A a neighbour of B. Measured
    on the next-item protocols (leave-one-out and temporal, on ML-100k and the simulator's log,
    benchmarks/results/itemcf_sequence.md), the best setting chosen on validation went both ways in all
    four. Twice the pairs for the co-visitation agent (~16 % of end-to-end ingest in one measurement).
    Changing it needs a rebuild."""
    neighbours_per_video: int = Field(default=100, ge=1)
    """Top-K item-CF neighbours kept per video."""
    covisit_half_life_s: float = Field(default=6 * 3600, gt=0)
    """Half-life of co-visitation weights: old pairs fade so the neighbours follow the present."""
    completion_ratio: float = Field(default=0.9, gt=0, le=2)
    """A view is a completion when watch_time >= completion_ratio * duration."""
    fast_skip_ms: int = Field(default=2000, ge=0)
    """A view shorter than this (or an explicit skip) is a fast skip: negative feedback."""
    short_window_s: int = Field(default=60, ge=1)
    """Tumbling window of per-video engagement, seconds."""
    long_window_s: int = Field(default=3600, ge=1)
    """Sliding (hopping) window of per-video engagement, seconds: the sum of its panes."""
    long_window_step_s: int = Field(default=900, ge=1)
    """Pane of the long window, seconds (its hop). Each event adds to one pane; a long window is the sum
    of the long_window_s / long_window_step_s panes it covers, added up when it is read."""
    trending_half_life_s: float = Field(default=1800, gt=0)
    """Half-life of the gravity-decayed trending score."""
    batch_size: int = Field(default=5000, ge=1)
    """Most events an agent aggregates before writing tables and Redis once per key. A larger batch
    costs less per event (fewer Redis round trips, each key written once for more events); what it cost
    was freshness: at 5,000 (tried on 2026-12-06 before `gil_switch_interval_ms`) p99 under 5,000
    events/s was 896 ms, the consumer thread's slow fetches letting history fall behind and an event
    wait for the whole batch it landed in. With fetches that keep up, 5,000: one-worker replay of
    1,000,000 events 111.5 s against 124.5 s at 2,000 (101 against 112 CPU µs per event)."""
    batch_within_s: float = Field(default=0.05, gt=0)
    """Longest an agent waits to fill a batch: the floor of event-to-visible latency."""
    serving_write_interval_s: float = Field(default=0.15, gt=0)
    """How often the engagement and co-visitation agents write what serving reads (stats documents,
    trending, neighbour lists) for the keys touched since: a key hot in every batch is written once per
    interval. The user's own history is written after every batch regardless."""
    neighbours_write_interval_s: float = Field(default=1.0, gt=0)
    """How often the co-visitation agent writes the neighbour lists it touched: a popular video gains
    pairs in every batch, and rewriting its whole list every `serving_write_interval_s` took a quarter of
    the worker's time. A new neighbour reaches serving within this plus a web process's refresh."""
    serving_write_max_share: float = Field(default=0.1, gt=0, le=1)
    """Most of the time an agent spends writing what serving reads: after a write that took d seconds
    the next waits at least d x (1/share - 1). Idle, writes are short and the interval rules; under a
    backlog they grow, and grow rarer, each key written once for many batches (at 0.25, in a trial
    where downstream ran alongside a history backlog, its writes took 15 % of a 1,000,000-event ingest).
    Once an agent has had no batch for 0.5 s the backlog is over, and the interval rules again
    (`agents.pipeline.write_due`): the last keys of a replay or a burst are written at once."""
    state_flush_interval_s: float = Field(default=5.0, gt=0)
    """How often an agent makes its state durable: dirty table keys to RocksDB and the changelog (once per
    key, however many events changed it), forwarded messages acknowledged, then the offset commit. Longer
    means fewer changelog messages per event and more events replayed after a crash (always exactly:
    every value carries the source offsets it has applied). Each flush also releases the cache, so the
    next batches read their keys from RocksDB again: at 1,000,000 events, encoding and re-reading table
    values was 11 % of the worker's CPU at 3 s."""
    state_cache_keys: int = Field(default=50_000, ge=0)
    """Keys each table keeps decoded in memory across flushes (per worker, all its partitions): below it
    nothing is released, so a hot key is read from RocksDB and decoded once, not after every flush.
    At 1,000,000 events (20,000 videos, 42,000 active users) the whole working set fits; memory is
    ~1-30 KB per key (a neighbour map of 100-200 entries is the largest). 0 releases at every flush."""
    stream_buffer_maxsize: int = Field(default=32_768, ge=1)
    """Messages a worker buffers per topic partition before it pauses fetching it. A small buffer makes
    the consumer pause and resume partitions all the time under load (each resume costs a fetch round
    trip), which halved ingest here at 4,000."""
    consumer_max_fetch_bytes: int = Field(default=64 * 1024, ge=4096)
    """Most bytes the worker fetches per partition at a time. Faust hands a fetch's messages to the agents
    in order, so one big fetch of interactions (1 MB per partition by default, ~40,000 events) kept the
    engagement and co-visitation agents waiting for seconds behind it during a backlog."""
    consumer_fetch_max_wait_ms: int = Field(default=100, ge=1)
    """Longest the broker holds a worker's fetch request when the partitions in it have nothing new
    (`recstream.streaming.delivery.limit_fetch_wait`; Faust's own is 1,500 ms): a bound on how long a
    user's event can wait for the fetch that brings it."""
    producer_linger_ms: int = Field(default=10, ge=0)
    """How long the worker's batch producer waits to fill a batch (changelogs, internal topics)."""
    producer_batch_bytes: int = Field(default=512 * 1024, ge=16 * 1024)
    """Largest batch the worker's producer sends to one partition at once."""
    redis_check_interval_s: float = Field(default=2.0, gt=0)
    """How often a worker checks that Redis still holds its data (`agents.rematerialise`): after a flush,
    the views the tables hold are back within about this long plus the time to write them."""
    gc_interval_s: float = Field(default=0.0, ge=0)
    """0 (the default): a worker runs the garbage collector only every `gc_full_interval_s`. Else also
    this often over the objects made since the last run (`recstream.streaming.garbage`: automatic
    collection is off in a worker): reference cycles (rare) die sooner, at the price of a pause each
    time (150-250 ms every 10 s at 5,000 events/s)."""
    gc_full_interval_s: float = Field(default=3600.0, gt=0)
    """How often the collector walks every object and freezes the survivors (a pause of a few hundred ms
    with a large table cache): what finds the reference cycles a worker makes."""
    persist_interval_s: float = Field(default=2.0, gt=0)
    """How often per-video stats and user profiles changed since the last time go to MongoDB."""
    persist_max_share: float = Field(default=0.1, gt=0, le=1)
    """Most of the time an agent's MongoDB sink spends writing: after a write that took d seconds the
    next waits at least d x (1/share - 1) (`streaming.sinks.MongoSink`). Under a backlog writes grow
    rarer and larger, each document once for many batches; offsets are committed only past what
    MongoDB holds, so a crash then replays more (exactly, all the same)."""

    # --- training -----------------------------------------------------------------------
    train_tune_trials: int = Field(default=8, ge=1)
    """ALS parameter sets a training round tries on its validation slice (`recstream.training.tuning`):
    each is one Spark fit of the newest `train_tune_max_events` events. 1: the flags as given."""
    train_tune_max_events: int = Field(default=500_000, ge=100)
    """Newest events a training round tunes and measures on (read to the driver). The model itself is
    trained on the whole log (or `--window-days`) with what the tuning chose."""

    # --- serving ------------------------------------------------------------------------
    max_per_creator: int = Field(default=2, ge=1)
    """At most this many videos of one creator in a recommendation list."""
    blend_itemcf: float = 1.0
    """Blend weight of item-CF candidates. The item-CF, ALS and trending weights each training round
    chooses are published with the model and served; one set here (in the environment) is pinned: served
    as set, and never tuned. Unset and no model active: these defaults."""
    blend_als: float = 1.0
    """Blend weight of ALS candidates (from the active model unless set: see blend_itemcf)."""
    blend_trending: float = 0.3
    """Blend weight of trending candidates (from the active model unless set: see blend_itemcf). Served
    as at least 0.001 (`recommend.FILL_WEIGHT`): trending always fills a list the other sources leave
    short, ranked below them, and is a new user's whole list."""
    blend_fresh: float = 0.2
    """Blend weight of fresh (recently published) videos."""
    fresh_window_s: int = Field(default=24 * 3600, ge=1)
    """A video counts as fresh for this long after it was published."""
    model_check_interval_s: float = Field(default=1.0, gt=0)
    """How often a web process checks Redis for a newly activated ALS model (reloaded without restart)."""
    serving_refresh_interval_s: float = Field(default=0.25, gt=0)
    """How often a web process refreshes its in-process serving state (neighbour lists and catalog through
    their change feeds, the trending and fresh pools, the model check) from Redis: the bound on how stale
    what it serves is, on top of the agents' `serving_write_interval_s`."""
    serving_pool_size: int = Field(default=300, ge=10)
    """Trending and fresh candidates kept per web process (each pool's top)."""
    serving_als_pool_size: int = Field(default=1000, ge=0)
    """ALS's own candidates in the blend: the catalog videos with the longest factor vectors (what its
    top lists are mostly made of), scored per request beside the pools and the item-CF candidates. 0:
    the blend's ALS only re-ranks those (it then fell ~3 s of watch time per impression behind ALS alone
    in the closed loop). Their cost at 1,000 is within the serving benchmark's noise (docs/architecture.md)."""
    serving_neighbours_per_video: int = Field(default=50, ge=1)
    """Most item-CF neighbours per video that serving reads: the covisit agent writes each list's best
    this many to Redis (of the `neighbours_per_video` it keeps), and a serving process keeps them (~16
    bytes each, the largest part of its memory, and of a request's item-CF work). Writing 50, not up to
    199, made each second's rewrite of the touched lists, and every process's reload of them, ~3x
    smaller."""
    seen_bloom_bits: int = Field(default=16384, ge=64)
    """Size of each user's seen filter in bits (2 KiB by default). With `seen_bloom_hashes`=7 a video the
    user never engaged with is wrongly taken as seen (and not recommended) with probability ~0.06% once
    they engaged with 1,000 distinct videos, ~2% at 2,000, ~25% at 4,000; a seen video is never taken as
    unseen. Changing it needs a rebuild (`recstream rebuild`): the bits already set would not match."""
    seen_bloom_hashes: int = Field(default=7, ge=1, le=16)
    """Bits each video sets in a seen filter."""
    publish_impressions: bool = True
    """Serving publishes what each answer showed to the impressions topic (user, videos in order, strategy,
    model version), queued without waiting: the input of `max_unengaged_impressions` and of the
    closed loop's and dashboard's exposure figures."""
    max_unengaged_impressions: int = Field(default=3, ge=0)
    """A video shown to a user this many times without them engaging with it is not shown to them
    again (the impressions topic counts showings; engaged videos are never shown again anyway). 0: off."""
    shown_per_user: int = Field(default=200, ge=1)
    """Videos whose showings are counted per user (the most recently shown)."""
    strategies: list[Literal["random", "trending", "itemcf", "als", "hybrid"]] = Field(
        default_factory=lambda: ["hybrid"], min_length=1
    )
    """Serving strategies for A/B buckets: users are split by a stable hash of their id into one bucket
    per entry (JSON list in the environment, e.g. '["random","trending","itemcf","als","hybrid"]')."""

    @model_validator(mode="after")
    def _kafka_credentials(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and (not self.kafka_username or self.kafka_password is None):
            raise ValueError(
                f"RECSTREAM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "RECSTREAM_KAFKA_USERNAME and RECSTREAM_KAFKA_PASSWORD"
            )
        if not sasl and (self.kafka_username or self.kafka_password is not None):
            # Credentials with a PLAINTEXT protocol would be silently unused: say so instead.
            raise ValueError(
                "RECSTREAM_KAFKA_USERNAME/PASSWORD are set but RECSTREAM_KAFKA_SECURITY_PROTOCOL is "
                f"{self.kafka_security_protocol}: set it to SASL_PLAINTEXT or SASL_SSL"
            )
        return self

    def __repr_args__(self):  # noqa: ANN204 - pydantic's own signature
        """The URLs appear with their passwords as `***` (SecretStr fields already print masked)."""
        yield from super().__repr_args__()
        yield "redis_url", redact_url(self.redis_url)
        yield "mongo_url", redact_url(self.mongo_url)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment the first time they are asked for."""
    return Settings()
