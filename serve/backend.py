"""Where requests are decoded: ``LocalBackend`` runs the engine in this process (``mof-serve``);
``mof.serve.ray_app.RayBackend`` sends them to engine replicas on a Ray cluster. The app talks to
either through the same three calls: ``load()``, ``await submit(job, sink)``, ``stop()``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from mof.runtime.bundle_default import DEFAULT_BUNDLE
from mof.runtime.model import Model

from .cache import StateCache
from .config import ServeConfig
from .engine import Engine, Sink, Ticket
from .metrics import Metrics
from .protocol import Job

log = logging.getLogger("mof.serve")


@dataclass(frozen=True)
class ModelInfo:
    """What the HTTP side needs to know of the model it serves."""
    form: str              # the bundle's prompt form (chat messages are rendered in it)
    precision: str         # "fp32", "int8" or "int4"


def open_engine(config: ServeConfig, metrics: Metrics, model: Optional[Model] = None) -> Engine:
    """Load the bundle (unless ``model`` is given), make its state cache, start an engine on it."""
    model = model or Model.load(config.model or DEFAULT_BUNDLE, precision=config.precision, threads=config.threads,
                                providers=config.provider)
    warning = model.manifest.accuracy_warning(model.precision)
    if warning:
        log.warning("mof-serve: %s", warning)
    cache = None
    if config.cache_mb > 0:
        identity = f"{model.manifest.network_identity}/{model.precision}"
        cache = StateCache(int(config.cache_mb * 2 ** 20), identity, model.config, config.state_dir)
    engine = Engine(model, config, metrics, cache)
    engine.start()
    log.info("mof-serve: %s ready (%s, %s mode%s)", model.bundle_dir.name, model.precision, model.recommended_mode,
             f", refill every {model.recommended_refill_every}" if model.recommended_mode == "stream" else "")
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
        return ModelInfo(self.engine.model.form, self.engine.model.precision)

    async def submit(self, job: Job, sink: Sink) -> Ticket:
        return self.engine.submit(job, sink)

    def status(self) -> dict:
        return {"active": self.engine.active, "queued": self.engine.waiting}

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop(0.0)
