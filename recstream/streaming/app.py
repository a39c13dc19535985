"""The Faust app: `faust -A recstream.streaming.app worker` and `recstream worker` both run it."""

from __future__ import annotations

import logging
import sys

import faust

from recstream import metrics
from recstream.kafka.config import faust_credentials
from recstream.settings import Settings, get_settings
from recstream.streaming import garbage


class Worker(faust.Worker):
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Without Faust's startup spinner. For it, Faust sets the root logger to DEBUG whenever the level
        asked for is WARN or above (`--loglevel warn`): every debug call in aiokafka and Faust then built
        a log record only for the handlers to drop it (~3 % of a worker's CPU during a replay)."""
        self.spinner = None
        super().on_setup_root_logger(logger, level)


class RecstreamApp(faust.App):
    def worker_init(self) -> None:
        """A worker process (`recstream worker`, `faust ... worker`), not a tool importing the app."""
        garbage.Collector.install()
        metrics.track_gc()
        # The Kafka consumer runs in a thread of its own (Faust's), which needs the GIL for every step
        # of a fetch; see `Settings.gil_switch_interval_ms`.
        sys.setswitchinterval(self.recstream_settings.gil_switch_interval_ms / 1000)  # type: ignore[attr-defined]
        super().worker_init()

    async def on_first_start(self) -> None:
        # Create our topics and the tables' changelogs before the consumer subscribes: a worker that
        # subscribes to a topic its broker does not list yet ignores it, and a table whose changelog
        # it cannot see crashes its agent ("changelog topic has 0 partitions").
        from recstream.kafka.admin import changelog_specs, ensure_topics

        s = self.recstream_settings  # type: ignore[attr-defined]
        changelogs = changelog_specs(self.tables.values(), s.interactions_partitions, s.replication_factor)
        await ensure_topics(s, extra=changelogs)
        await super().on_first_start()

    def on_webserver_init(self, web) -> None:  # noqa: ANN001 - faust.web.Web
        """CORS for the configured origins only (Faust's own CORS needs aiohttp_cors; ours is small)."""
        super().on_webserver_init(web)
        origins = self.recstream_settings.cors_origins  # type: ignore[attr-defined]
        if origins:
            from recstream.web.cors import cors_middleware

            web.web_app.middlewares.append(cors_middleware(origins))


# The modules that register agents, tables and views on the app.
PARTS = ("recstream.agents", "recstream.web.api", "recstream.web.dashboard")


def create_app(settings: Settings) -> faust.App:
    (settings.data_dir / "faust" / settings.app_id).mkdir(parents=True, exist_ok=True)
    app = RecstreamApp(
        settings.app_id,
        broker=[f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        store="rocksdb://",
        # Per app id: a rebuild under a new app id (`recstream rebuild`) must not open the old RocksDB.
        datadir=str(settings.data_dir / "faust" / settings.app_id / f"worker-{settings.web_port}"),
        topic_partitions=settings.interactions_partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.table_standby_replicas,
        processing_guarantee=settings.processing_guarantee,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        # Serving reads what agents materialise to Redis, so any worker answers for any key; the raw
        # table pages Faust would add are not an API we want to expose.
        web_tables_enabled=False,
        # /router/ lists the workers' URLs and key owners: nothing recstream uses (serving reads Redis).
        web_router_enabled=False,
        # The app does not import its agents and views (they import it): Faust imports these modules
        # when a worker starts (`app.main()`, `faust -A ... worker`), or `assembled()` does.
        autodiscover=list(PARTS),
        consumer_auto_offset_reset="earliest",
        # Faster group joins and failure detection than the defaults (a first join takes ~30 s).
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        consumer_max_fetch_size=settings.consumer_max_fetch_bytes,
        producer_linger_ms=5,
        table_cleanup_interval=30.0,
        Worker=Worker,
    )
    app.recstream_settings = settings  # type: ignore[attr-defined]
    return app


app = create_app(get_settings())
_gc = app.recstream_settings  # type: ignore[attr-defined]
_collector = garbage.Collector(_gc.gc_full_interval_s, young_runs=_gc.gc_interval_s > 0)


# Young runs off: a tick a minute freezes what is new, and runs the full collection when it is due.
@app.timer(interval=_gc.gc_interval_s or min(60.0, _gc.gc_full_interval_s))
async def collect_garbage() -> None:
    _collector.collect()


def assembled() -> faust.App:
    """The app with every agent, table and view registered, for code that uses it without starting a
    worker through Faust's command line (tests, tools)."""
    app.discover()
    return app


def run_worker(extra_args: list[str] | None = None) -> None:
    """Run one worker with its web views, as `faust -A recstream.streaming.app worker` would."""
    from recstream.web.access import require_keys

    settings = get_settings()
    require_keys(settings, settings.web_host)
    argv = ["worker", "--loglevel", settings.log_level, *(extra_args or [])]
    sys.argv = [sys.argv[0], *argv]
    app.main()
