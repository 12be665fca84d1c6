"""Where requests are decoded: ``LocalBackend`` runs the engine in this process (``mof-serve``);
``mof.serve.ray_app.RayBackend`` sends them to engine replicas on a Ray cluster. The app talks to
either through the same calls: ``load()``, ``await submit(job, sink)``, ``status()``, ``stop()``.
``submit`` returns once the request is admitted: a request that finds every slot taken waits in
the engine's FIFO queue for up to ``--queue-timeout`` seconds (``admit``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Optional

from mof.runtime.bundle_default import DEFAULT_BUNDLE
from mof.runtime.decoding import resolve_decoding
from mof.runtime.model import Model

from .cache import StateCache
from .config import ServeConfig
from .engine import Engine, Sink, Ticket
from .metrics import Metrics
from mof.runtime.vocab import Vocabulary

from .protocol import ApiError, Job

log = logging.getLogger("mof.serve")


@dataclass(frozen=True)
class ModelInfo:
    """What the HTTP side needs to know of the model it serves."""
    form: str              # the bundle's prompt form (chat messages are rendered in it)
    precision: str         # "fp32", "int8" or "int4"
    mode: str              # the bundle's recommended decoding mode ("stream" or "exact")
    refill_every: Optional[int]   # stream mode's recommended R
    vocab: Vocabulary      # for /tokenize and /detokenize
    self_check: Optional[dict] = None   # --self-check's verdict (mof.runtime.selfcheck), for /health


def model_info(model: Model) -> ModelInfo:
    decoding = resolve_decoding(model)           # what a request that names neither gets
    check = model.self_check_result
    verdict = None if check is None else {"passed": check.passed, "max_abs_diff": check.max_abs_diff,
                                           "atol": check.atol, "top1_agree": check.top1_agree,
                                           "rows": check.rows, "line": check.line()}
    return ModelInfo(model.form, model.precision, decoding.mode, decoding.refill_every, model.vocab, verdict)


async def admit(engine: Engine, job: Job, sink: Sink, timeout: float) -> Ticket:
    """Submit ``job`` and wait (FIFO) until the engine admits it: ApiError 429 after ``timeout``
    seconds in the queue (or at once when the queue is full). Cancelled while it waits (its client
    left), it leaves the queue."""
    loop = asyncio.get_running_loop()
    admitted = loop.create_future()

    def settle(error) -> None:
        if not admitted.done():
            admitted.set_result(error)

    def on_admit(error) -> None:           # from the engine's thread
        with contextlib.suppress(RuntimeError):          # the loop is gone: nobody waits
            loop.call_soon_threadsafe(settle, error)
    ticket = engine.submit(job, sink, on_admit)
    if ticket.admitted:
        return ticket
    try:
        error = await asyncio.wait_for(asyncio.shield(admitted), timeout)
    except asyncio.TimeoutError:
        if not engine.withdraw(ticket, timed_out=True):
            return ticket                                 # admitted at the last moment
        raise ApiError(429, f"every slot stayed taken for {timeout:g} s (--queue-timeout); try again shortly",
                       code="queue_timeout", retry_after=1) from None
    except asyncio.CancelledError:
        if not engine.withdraw(ticket):
            ticket.cancel()
        raise
    if error is not None:
        raise error
    return ticket


def open_engine(config: ServeConfig, metrics: Metrics, model: Optional[Model] = None) -> Engine:
    """Load the bundle (unless ``model`` is given), make its state cache, start an engine on it."""
    model = model or Model.load(config.model or DEFAULT_BUNDLE, precision=config.precision, threads=config.threads,
                                providers=config.provider, self_check=config.self_check)
    if config.self_check and model.self_check_result is None:    # a model the caller loaded
        model.self_check(required=True)
    if model.self_check_result is not None:
        log.info("mof-serve: self-check: %s", model.self_check_result.line())
    warning = model.manifest.accuracy_warning(model.precision)
    if warning:
        log.warning("mof-serve: %s", warning)
    cache = None
    if config.cache_mb > 0:
        identity = f"{model.manifest.network_identity}/{model.precision}"
        cache = StateCache(int(config.cache_mb * 2 ** 20), identity, model.config, config.state_dir)
    engine = Engine(model, config, metrics, cache)
    engine.start()
    log.debug("mof-serve: %s loaded (%s, %s)", model.bundle_dir.name, model.precision, resolve_decoding(model).describe())
    return engine


class LocalBackend:
    """The engine in this process."""

    def __init__(self, config: ServeConfig, metrics: Metrics, model: Optional[Model] = None):
        self.config, self.metrics, self._model = config, metrics, model
        self.engine: Optional[Engine] = None

    @property
    def cache(self) -> Optional[StateCache]:
        return None if self.engine is None else self.engine.cache

    def load(self) -> ModelInfo:
        self.engine = open_engine(self.config, self.metrics, self._model)
        return model_info(self.engine.model)

    async def submit(self, job: Job, sink: Sink) -> Ticket:
        return await admit(self.engine, job, sink, self.config.queue_timeout)

    def status(self) -> dict:
        return self.engine.status()

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop(0.0)
