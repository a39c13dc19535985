"""The Kafka broker restarted mid-stream: the web role's producer and the worker reconnect by themselves,
and nothing that got a 202 is lost or doubled (acks=all, idempotent producer).

The broker is a private one (`faults.PrivateKafka`: the shared broker on 9092 is never stopped), and so
is Redis (every DB of the shared one belongs to some other test). A client thread POSTs events to the
web role's /events in batches at a modest rate, recording which got a 202, retrying any that did not
(as a real client would); meanwhile the broker is stopped cleanly, left down a few seconds, and started
again on the same ports and data. Neither the worker nor the web role is restarted.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from recstream.devtools import reference
from recstream.devtools.devcluster import Cluster, request
from recstream.records import Interaction
from recstream.streamstate import StreamParams

from .conftest import get
from .faults import PrivateKafka, PrivateServer, read_whole_log, wait_exact, world_events

N, BATCH, RATE = 20_000, 100, 1_500
DOWN_S = 4.0
CLIENT_TIMEOUT_S = (
    60.0  # longer than the outage: a request waits the outage out, the broker's producer retries
)


@dataclass
class Client:
    """POSTs the batches in order at RATE events/s; a batch that does not get a 202 is retried until it does."""

    url: str
    batches: list[list[Interaction]]
    accepted: list[float] = field(default_factory=list)  # when each batch got its 202 (monotonic)
    attempts: list[int] = field(default_factory=list)  # requests each batch took
    failures: list[tuple[int, str]] = field(default_factory=list)  # (batch, what the failed attempt got)
    latencies: list[float] = field(default_factory=list)  # of the accepted request of each batch
    error: BaseException | None = None

    def run(self) -> None:
        try:
            t0 = time.monotonic()
            deadline = t0 + 150
            for i, batch in enumerate(self.batches):
                time.sleep(max(0.0, t0 + i * BATCH / RATE - time.monotonic()))
                body = orjson.dumps({"events": [e.model_dump(mode="json", exclude_none=True) for e in batch]})
                attempt = 0
                while True:
                    attempt += 1
                    sent = time.monotonic()
                    try:
                        status, answer = request("POST", self.url + "/events", body, timeout=CLIENT_TIMEOUT_S)
                    except OSError as exc:  # refused, reset, timed out
                        status, answer = 0, f"{type(exc).__name__}: {exc}"
                    if status == 202 and answer.get("accepted") == len(batch):
                        self.latencies.append(time.monotonic() - sent)
                        break
                    self.failures.append((i, f"{status} {str(answer)[:200]}"))
                    assert time.monotonic() < deadline, f"batch {i} never accepted: {self.failures[-5:]}"
                    time.sleep(0.5)
                self.accepted.append(time.monotonic())
                self.attempts.append(attempt)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread


def _processed(url: str) -> float:
    """Interactions the worker's history agent has processed (its /metrics counter)."""
    for line in get(url + "/metrics")[1].get("text", "").splitlines():
        if line.startswith('recstream_messages_processed_total{agent="history"}'):
            return float(line.split()[-1])
    return 0.0


def _until(check, timeout: float, what: str) -> float:  # noqa: ANN001
    """Poll until check() holds; returns the seconds it took."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.1)
    return time.monotonic() - t0


def _key(e: Interaction) -> tuple:
    return e.ts, e.user_id, e.video_id, e.type


def test_broker_restarted_mid_stream(services, tmp_path) -> None:  # noqa: ANN001
    kafka = PrivateKafka(tmp_path / "kafka", services)
    sink = PrivateServer("redis", tmp_path / "redis")
    cluster: Cluster | None = None
    try:
        kafka.start()
        sink.start()
        base = services.model_copy(update={"kafka_bootstrap": kafka.bootstrap, "redis_url": sink.url})
        cluster = Cluster(base, tmp_path / "cluster", redis_db=0)
        worker = cluster.start_worker()
        cluster.wait_settled()
        web = cluster.start_web()
        pids = worker.proc.pid, web.proc.pid
        events = world_events(N, seed=17)
        client = Client(web.url, [events[i : i + BATCH] for i in range(0, N, BATCH)])
        thread = client.start()

        _until(lambda: len(client.accepted) >= 50 and _processed(worker.url) > 2_000, 60, "the stream")
        down_at = time.monotonic()
        kafka.stop()
        stopped_s = time.monotonic() - down_at
        accepted_at_stop, processed_at_stop = len(client.accepted), _processed(worker.url)
        time.sleep(DOWN_S)
        restart_s = kafka.start()
        up_at = time.monotonic()
        first_202_s = _until(
            lambda: any(t > up_at for t in client.accepted) or client.error is not None,
            60,
            "a 202 after the restart",
        )
        _until(lambda: _processed(worker.url) > processed_at_stop + 1_000, 90, "the worker to process again")
        resumed_s = time.monotonic() - up_at

        thread.join(150)
        assert not thread.is_alive(), "the client did not finish"
        assert client.error is None, repr(client.error)
        assert len(client.accepted) == len(client.batches)

        # Every accepted event is in the topic exactly once: no loss, no duplicate from producer retries.
        log = asyncio.run(read_whole_log(cluster))
        counts = Counter(_key(e) for _p, _o, e in log)
        sent = Counter(_key(e) for e in events)
        assert len(sent) == N, "world_events gave two identical events"
        missing = [k for k in sent if counts[k] == 0]
        doubled = {k: c for k, c in counts.items() if c > 1}
        unknown = [k for k in counts if k not in sent]
        print(
            f"\nprivate broker: started in {kafka.start_seconds[0]:.1f}s, stopped in {stopped_s:.1f}s "
            f"after {accepted_at_stop} batches, down {DOWN_S:.0f}s, restarted in {restart_s:.1f}s; "
            f"first 202 {first_202_s:.1f}s after it answered, worker processing again "
            f"{resumed_s:.1f}s after; failed attempts {len(client.failures)} {client.failures[:5]}; "
            f"slowest request {max(client.latencies):.1f}s; topic holds {len(log)} events"
        )
        assert not missing and not doubled and not unknown and len(log) == N, (
            f"{len(missing)} accepted events missing, {len(doubled)} doubled, {len(unknown)} unknown; "
            f"failed attempts: {client.failures[:10]}"
        )

        # While the broker was down the web role's producer retried its metadata with a backoff instead of
        # in a busy loop (unthrottled, it logged ~6,000 failed refreshes a second and spun a core).
        spins = web.log.read_text(errors="replace").count("Unable to update metadata")
        assert spins < 1_000, f"{spins} failed metadata refreshes logged by the web role during the outage"

        # The worker, never restarted, converges to exactly what the log implies.
        diffs = wait_exact(
            cluster, reference.compute(log, StreamParams.from_settings(cluster.settings)), timeout=90
        )
        assert diffs == [], "\n".join(diffs)
        assert worker.proc.poll() is None and web.proc.poll() is None, "a process exited"
        assert (worker.proc.pid, web.proc.pid) == pids
        assert get(worker.url + "/health")[0] == 200 and get(web.url + "/health")[0] == 200
    finally:
        if cluster is not None:
            cluster.stop()
        kafka.stop()
        sink.stop()
