"""Under Ray, /health and /metrics cover every engine replica: each replica reports its status
(active, queued, queue length and wait) and its Prometheus metrics every ``REPORT_SECONDS`` to
one small actor, ``ReplicaStats``, that the ingress owns; the ingress's /health sums them and
lists them per replica, and its /metrics adds each replica's metrics with a ``replica`` label.
A replica that stops reporting (it died) is dropped after ``STALE_SECONDS``.

Reports rather than calls: Ray Serve routes a handle's call to one replica of its choosing, so
the ingress cannot ask each replica in turn."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import ray
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("mof.serve")

NAME, NAMESPACE = "mof-replica-stats", "mof"
REPORT_SECONDS = 1.0
STALE_SECONDS = 5.0


@ray.remote(num_cpus=0)
class ReplicaStats:
    """The last report of each replica."""

    def __init__(self):
        self.reports: dict[str, tuple[float, dict, str]] = {}

    def report(self, replica: str, status: dict, metrics: str) -> None:
        self.reports[replica] = (time.monotonic(), status, metrics)

    def collect(self) -> dict[str, tuple[dict, str]]:
        now = time.monotonic()
        self.reports = {r: v for r, v in self.reports.items() if now - v[0] < STALE_SECONDS}
        return {r: (status, metrics) for r, (_, status, metrics) in self.reports.items()}


def stats_actor():
    """The ingress's ReplicaStats (created by the first caller, found by name after)."""
    return ReplicaStats.options(name=NAME, namespace=NAMESPACE, get_if_exists=True).remote()


def start_reporting(replica: str, status: Callable[[], dict], metrics: Callable[[], bytes]) -> threading.Thread:
    """In a replica: a daemon thread that reports ``status()`` and ``metrics()`` every second."""
    def run() -> None:
        actor = None
        while True:
            try:
                if actor is None:
                    actor = ray.get_actor(NAME, namespace=NAMESPACE)
                actor.report.remote(replica, status(), metrics().decode("utf-8"))
            except Exception:          # the ingress (and its actor) not up yet, or restarting
                actor = None
            time.sleep(REPORT_SECONDS)
    thread = threading.Thread(target=run, name="mof-report", daemon=True)
    thread.start()
    return thread


SUMMED = ("active", "queued", "queue_length")
INGRESS_ONLY = ("mof_requests",)        # HTTP is counted by the ingress; a replica's are always empty


def merge_status(reports: dict[str, tuple[dict, str]]) -> dict:
    """/health's counts over the replicas, and each replica's own."""
    per = {r: status for r, (status, _) in sorted(reports.items())}
    out = {k: sum(s.get(k, 0) for s in per.values()) for k in SUMMED}
    out["queue_wait_s"] = max((s.get("queue_wait_s", 0.0) for s in per.values()), default=0.0)
    out["replicas"] = per
    return out


def merge_metrics(reports: dict[str, tuple[dict, str]]) -> bytes:
    """The replicas' metrics as one Prometheus text, each sample labelled with its replica."""
    families: dict[str, Metric] = {}
    for replica, (_, text) in sorted(reports.items()):
        for family in text_string_to_metric_families(text):
            if family.name in INGRESS_ONLY:
                continue
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type)
            for sample in family.samples:
                merged.add_sample(sample.name, {"replica": replica, **sample.labels}, sample.value)

    class Collected:
        def collect(self):
            return list(families.values())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collected())
    return generate_latest(registry)
