"""The server's Prometheus metrics (GET /metrics), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 (re-exported for the app)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("mof_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("mof_prompt_tokens", "prompt tokens of finished choices", registry=r)
        self.cached_tokens = Counter("mof_cached_prompt_tokens",
                                     "prompt tokens the state cache had already read", registry=r)
        self.completion_tokens = Counter("mof_completion_tokens", "tokens generated", registry=r)
        self.cache_hits = Counter("mof_state_cache_hits", "stream requests continuing a cached state", registry=r)
        self.cache_misses = Counter("mof_state_cache_misses", "stream requests read from scratch", registry=r)
        self.cache_entries = Gauge("mof_state_cache_entries", "conversations in the state cache", registry=r)
        self.cache_bytes = Gauge("mof_state_cache_bytes", "bytes held by the state cache", registry=r)
        self.active = Gauge("mof_active_conversations", "rows being decoded", registry=r)
        self.queued = Gauge("mof_queued_conversations", "admitted rows waiting for a free batch slot", registry=r)
        self.queue_length = Gauge("mof_queue_length", "requests waiting for admission (--max-queue)", registry=r)
        self.queue_wait = Histogram("mof_queue_wait_seconds", "time from arrival to admission, per request",
                                    buckets=(.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.rejected = Counter("mof_rejected_requests", "requests refused with 429: the queue was full "
                                "(queue_full) or their wait ran out (queue_timeout)", ["reason"], registry=r)
        self.cancelled = Counter("mof_cancelled_rows", "rows dropped because their client went away",
                                 registry=r)
        self.batch = Histogram("mof_batch_rows", "rows read per engine tick",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.tick_seconds = Histogram("mof_tick_seconds", "graph time per engine tick",
                                      buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1), registry=r)
        self.decode_rate = Gauge("mof_decode_tokens_per_second", "tokens generated per second, last 5 s",
                                 registry=r)

    def cache_lookup(self, hit: bool) -> None:
        (self.cache_hits if hit else self.cache_misses).inc()

    def conversations(self, active: int, queued: int) -> None:
        self.active.set(active)
        self.queued.set(queued)

    def tick(self, rows: int, seconds: float) -> None:
        self.batch.observe(rows)
        self.tick_seconds.observe(seconds)

    def finished(self, usage) -> None:
        self.prompt_tokens.inc(usage.prompt_tokens)
        self.cached_tokens.inc(usage.cached_tokens)
        self.completion_tokens.inc(usage.completion_tokens)

    def render_requests(self) -> bytes:
        """The HTTP request counts alone (a Ray ingress: the engines' metrics are the replicas')."""
        return generate_latest(self.registry.restricted_registry(["mof_requests_total", "mof_requests_created"]))

    def render(self, cache=None) -> bytes:
        if cache is not None:
            self.cache_entries.set(len(cache))
            self.cache_bytes.set(cache.bytes)
        return generate_latest(self.registry)
