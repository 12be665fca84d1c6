"""mof-serve on a Ray Serve cluster (the [ray] extra): the same app, the engines as replicas.

    mof-serve --ray --replicas 2                      # a local Ray, or --ray-address to join one
    serve run mof.serve.ray_app:app_builder model=t6.mof int8=true replicas=2   # Ray's own CLI
    serve deploy examples/ray/serve_config.yaml                                # or a config file

Two deployments:
- ``mof-ingress``: the FastAPI app of ``app.py`` (same endpoints, fields, errors) over a
  ``RayBackend``, which sends each request to an engine replica and relays its events;
- ``mof-engine``: ``EngineReplica``, one continuous-batching engine (``engine.py``) and state cache
  per replica, ``--replicas N`` of them or autoscaled between MIN and MAX.

**Conversation affinity.** A request goes out with Ray Serve's multiplexed model id set to a key of
its conversation (``Job.conversation``: the first user message of a chat, the first 32 characters
of a completion prompt, and OpenAI's ``user`` field when given) — what every turn of a conversation
shares. Ray routes a key to the replica that has seen it, so a follow-up turn finds its cached
state there. When that replica is gone, another one reads the whole prompt afresh: slower, never
wrong. Different conversations with the same key share a replica; that only affects balance.

**Faults.** A replica that dies takes its rows with it: their clients get a 503 (or, mid-stream,
an SSE error event). A request that had not started on it yet is sent again once, to a replica
Ray picks. Ray Serve's controller starts a new replica to restore the count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import Optional

from ray import serve
from ray.exceptions import RayActorError, RayTaskError

from .backend import ModelInfo, admit, model_info, open_engine
from .config import POSITIVE, SETTINGS, ServeConfig, parse_setting
from .engine import Event, Sink
from .metrics import Metrics
from .protocol import ApiError, Job
from .ray_stats import merge_metrics, merge_status, start_reporting, stats_actor

log = logging.getLogger("mof.serve")

AFFINITY_SLOTS = 4096            # conversation keys a replica is preferred for (Ray's LRU beyond)
ENGINE = "mof-engine"
INGRESS = "mof-ingress"


def affinity_key(conversation: str) -> str:
    return hashlib.sha256(conversation.encode("utf-8")).hexdigest()[:24]


@serve.deployment(name=ENGINE)
class EngineReplica:
    """One engine and its state cache; ``generate`` streams a request's events."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.metrics = Metrics()
        self.engine = open_engine(config, self.metrics)
        self.replica = serve.get_replica_context().replica_id.unique_id
        start_reporting(self.replica, self.engine.status, lambda: self.metrics.render(self.engine.cache))

    def info(self) -> ModelInfo:
        return model_info(self.engine.model)

    @serve.multiplexed(max_num_models_per_replica=AFFINITY_SLOTS)
    async def conversation(self, key: str) -> str:
        """Nothing to load: this only tells Ray's router which conversations this replica holds."""
        return key

    async def generate(self, job: Job):
        """First an admission record ({"mode", "refill_every", "replica"} or {"error": {...}}), then
        lists of the engine's events for ``job`` until every choice is done."""
        await self.conversation(serve.get_multiplexed_model_id())
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def sink(event: Event) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, event)
        try:
            ticket = await admit(self.engine, job, sink, self.config.queue_timeout)
        except ApiError as e:
            yield {"error": {"status": e.status, "message": e.message, "param": e.param, "code": e.code,
                             "retry_after": e.retry_after}}
            return
        yield {"mode": ticket.mode, "refill_every": ticket.refill_every, "replica": self.replica}
        pending = job.n
        try:
            while pending:
                events = [await queue.get()]
                while not queue.empty():          # what piled up since: one Ray message, not many
                    events.append(queue.get_nowait())
                yield events
                if any(e.kind == "error" for e in events):
                    return
                pending -= sum(e.kind == "done" for e in events)
        finally:
            ticket.cancel()           # the ingress went away (client disconnect): free the rows

    def __del__(self):
        with contextlib.suppress(Exception):
            self.engine.stop(0.0)


@dataclass
class RemoteTicket:
    mode: str
    refill_every: Optional[int]
    replica: str
    task: Optional[asyncio.Task] = None

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


class RayBackend:
    """The app's backend in the ingress: requests go to engine replicas through a handle."""

    cache = None                      # the caches live in the replicas

    def __init__(self, handle, stats=None):
        self.handle, self.stats = handle, stats      # stats: the ReplicaStats actor (ray_stats.py)

    def load(self) -> ModelInfo:
        return self.handle.info.remote().result()

    async def _reports(self) -> dict:
        if self.stats is None:
            return {}
        try:
            return await self.stats.collect.remote()
        except Exception as e:                      # /health must answer even so
            log.warning("replica stats unavailable: %s", type(e).__name__)
            return {}

    async def status(self) -> dict:
        """/health's counts, summed over the replicas that reported in the last seconds, and each one's."""
        return merge_status(await self._reports())

    async def replica_metrics(self) -> bytes:
        """Every replica's metrics, each sample labelled with its replica (appended to /metrics)."""
        return merge_metrics(await self._reports())

    def stop(self) -> None:
        pass

    async def submit(self, job: Job, sink: Sink) -> RemoteTicket:
        key = affinity_key(job.conversation)
        for attempt in (1, 2):
            stream = self.handle.options(stream=True, multiplexed_model_id=key).generate.remote(job)
            try:
                first = await stream.__anext__()
                break
            except (RayActorError, RayTaskError) as e:     # the replica died before starting: once more
                stream.cancel()
                if attempt == 2:
                    raise ApiError(503, f"no engine replica could take the request ({type(e).__name__})",
                                   code="replica_unavailable", retry_after=1) from None
        if "error" in first:
            e = first["error"]
            raise ApiError(e["status"], e["message"], param=e["param"], code=e["code"], retry_after=e["retry_after"])
        ticket = RemoteTicket(first["mode"], first["refill_every"], first["replica"])
        ticket.task = asyncio.create_task(self._relay(stream, sink, ticket))
        return ticket

    async def _relay(self, stream, sink: Sink, ticket: RemoteTicket) -> None:
        try:
            async for events in stream:
                for event in events:
                    sink(event)
        except asyncio.CancelledError:
            stream.cancel()
            raise
        except Exception as e:       # the replica died mid-request
            log.warning("engine replica %s failed mid-request: %s", ticket.replica, type(e).__name__)
            sink(Event(0, "error", message=f"the engine replica serving this request stopped ({type(e).__name__})"))


@serve.deployment(name=INGRESS)
@serve.ingress()
class Ingress:
    """The HTTP side: the same app as a single mof-serve, over engine replicas."""

    def __init__(self, engines, config: ServeConfig):
        self.engines, self.config = engines, config

    def __serve_build_asgi_app__(self):
        from .app import create_app
        return create_app(self.config, backend=RayBackend(self.engines, stats_actor()))


def build(config: ServeConfig, replicas: int = 1, autoscale: Optional[tuple[int, int]] = None):
    """The Ray Serve application: ``replicas`` engines, or autoscaled between ``autoscale``'s bounds."""
    if autoscale:
        lo, hi = autoscale
        engines = EngineReplica.options(autoscaling_config={
            "min_replicas": lo, "max_replicas": hi,
            "target_ongoing_requests": max(1, config.max_batch // 2)})
    else:
        engines = EngineReplica.options(num_replicas=replicas)
    held = config.max_conversations + config.max_queue       # admitted, and waiting in the engine's queue
    engines = engines.options(max_ongoing_requests=held, ray_actor_options={"num_cpus": 0})
    return Ingress.options(max_ongoing_requests=held,
                           ray_actor_options={"num_cpus": 0}).bind(engines.bind(config), config)


def settings_from_args(args: dict) -> tuple[ServeConfig, int, Optional[tuple[int, int]]]:
    """Ray's application ``args`` (strings from the command line, YAML scalars from a config file)
    -> (ServeConfig, replicas, autoscale bounds), each setting read by ServeConfig's own parser
    (config.py, as mof-serve's flags are). Unknown names and bad values are errors, not ignored."""
    args = dict(args)
    if "int8" in args:                         # int8=true: the short form of precision=int8, as --int8
        if str(args.pop("int8")).lower() in ("1", "true", "yes", "on"):
            args.setdefault("precision", "int8")
    replicas = POSITIVE(str(args.pop("replicas", 1)))
    autoscale = args.pop("autoscale", None)
    bounds = tuple(int(x) for x in str(autoscale).split(":")) if autoscale else None
    if bounds is not None and (len(bounds) != 2 or not 0 <= bounds[0] <= bounds[1] or bounds[1] < 1):
        raise ValueError(f"autoscale must be MIN:MAX with 0 <= MIN <= MAX, got {autoscale!r}")
    given = {}
    for name, value in args.items():
        if name not in SETTINGS:
            raise ValueError(f"unknown mof-serve setting {name!r}; known: replicas, autoscale, {', '.join(SETTINGS)}")
        try:
            given[name] = parse_setting(name, value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return ServeConfig(**given), replicas, bounds


def app_builder(args: dict):
    """For Ray's own CLI and config files: ``serve run mof.serve.ray_app:app_builder model=t6.mof
    int8=true replicas=2`` (or ``autoscale=1:4``); any other ServeConfig field by its name."""
    config, replicas, bounds = settings_from_args(args)
    return build(config, replicas, bounds)
