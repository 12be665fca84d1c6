"""The engine: one thread owns the model and decodes every active conversation together.

Each request is ``n`` rows; a row is a ``Generation`` (mof.runtime.generate: sampling, text, stop
strings) and a decoder (mof.runtime.decoder: the refill rule). Every tick the engine asks each
active row which read it needs next (``decoder.plan``: its prompt, or the token it sampled last),
runs them all with ``run_reads`` — one graph call per kind and length: every one-token step in one
step-graph call, refills of equal length in one chunk-graph call, exact windows of equal length
in one call — then each row takes its logits and samples with its own options and seed. The same
rule and the same graphs as ``Generator``, and rows that do not depend on each other (a row's
logits are the same in a batch as alone: tests/runtime/test_bundle_format.py), so a seeded request
gets the tokens ``Generator`` gives it alone.

A prompt is read by one call of at most W tokens (a stream refill or an exact window: the rule's
own bound), so a new request never stalls the others for longer than one window pass. After a
stream row's last token the engine reads that token too and puts the decoder in the state cache,
and only then reports the choice done — so a follow-up sent the moment the reply ends finds it.
The client has all of the reply's text one tick before that.

Admission: a request whose rows fit within ``max_conversations`` is admitted at once; otherwise it
waits in a FIFO queue of at most ``max_queue`` requests until rows leave (``Ticket.on_admit`` is
called when it is admitted, or with an ApiError when the engine stops); a full queue is a 429. How
long a request may wait is the caller's choice (``withdraw`` takes it out of the queue).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from mof.runtime.decoder import STEP, Read, StreamDecoder, make_decoder, run_reads
from mof.runtime.generate import Generation
from mof.runtime.model import Model

from .cache import Entry, StateCache
from .config import ServeConfig, flag
from .metrics import Metrics
from .protocol import ApiError, Job, decoding_of

log = logging.getLogger("mof.serve")


@dataclass
class Usage:
    prompt_tokens: int
    cached_tokens: int                 # prompt tokens the state cache had read already
    completion_tokens: int = 0
    refills: int = 0                   # stream mode's refills while answering
    queue_ms: float = 0.0              # waiting in the admission queue
    prompt_ms: float = 0.0             # admitted -> first token (its prompt read, batch slot waited for)
    decode_ms: float = 0.0             # first token -> last token

    def timings(self) -> dict:
        """llama-server's per-request ``timings``, in mof's words."""
        after_first = self.completion_tokens - 1
        return {"queue_ms": round(self.queue_ms, 3), "prompt_ms": round(self.prompt_ms, 3),
                "decode_ms": round(self.decode_ms, 3), "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens, "completion_tokens": self.completion_tokens,
                "decode_tokens_per_second": round(after_first / (self.decode_ms / 1000), 2)
                if after_first > 0 and self.decode_ms > 0 else None}


@dataclass
class Event:
    """What the engine tells a request about one of its choices (from the engine's thread)."""
    choice: int
    kind: str                                      # "text", "done" or "error"
    text: str = ""                                 # "text": newly released text
    logprobs: list = field(default_factory=list)   # "text": [(token, logprob, [(token, logprob), ...])]
    finish_reason: Optional[str] = None            # "done": "stop" or "length"
    usage: Optional[Usage] = None                  # "done"
    message: str = ""                              # "error"
    status: int = 503                              # "error": 503 the server stopped (retry), 500 a failure


Sink = Callable[[Event], None]


class Row:
    """One choice of one request: a generation and the decoder that reads for it."""

    def __init__(self, ticket: "Ticket", choice: int, generation: Generation, decoder, usage: Usage):
        self.ticket, self.choice = ticket, choice
        self.generation, self.decoder, self.usage = generation, decoder, usage
        self.finishing = False             # generated; reading its last token for the cache
        self.done_event: Optional[Event] = None   # finishing: its "done", sent once the state is cached
        self.admitted = 0.0                # time.perf_counter() when admitted
        self.first_token = 0.0             # ... when its first token was sampled
        self.read: Optional[Read] = None   # planned and not run yet (a window read waiting its turn)
        self.waited = 0                    # ticks its planned window read has waited
        self._unreleased: list = []        # logprob entries whose text is not released yet

    ended = False                          # its "done" or "error" was sent: nothing follows

    def emit(self, event: Event) -> None:
        """Send ``event``; a row's last one ("done" or "error") is sent once, whatever path sends it."""
        if self.ended:
            return
        self.ended = event.kind != "text"
        self.ticket.sink(event)


@dataclass
class Ticket:
    """A submitted request: its rows, and how to cancel them."""
    sink: Sink
    top_logprobs: Optional[int] = None     # None: no logprobs; else alternatives per token
    mode: str = "stream"                   # how its rows decode
    refill_every: Optional[int] = None     # stream mode's R (None in exact mode)
    rows: list = field(default_factory=list)
    cancelled: bool = False
    on_admit: Optional[Callable] = None    # called (from any thread) with None once admitted from the
                                           # queue, or with the ApiError that ends its wait
    admitted: bool = False                 # its rows are the engine's (at once, or from the queue)
    submitted: float = 0.0                 # time.perf_counter() at submit

    def cancel(self) -> None:
        """Stop generating (a client went away); the rows leave at the next tick (or the queue)."""
        self.cancelled = True


class Engine:
    def __init__(self, model: Model, config: ServeConfig, metrics: Metrics, cache: Optional[StateCache] = None):
        self.model, self.config, self.metrics, self.cache = model, config, metrics, cache
        self._cond = threading.Condition()
        self._waiting: collections.deque[Row] = collections.deque()
        self._queue: collections.deque[Ticket] = collections.deque()    # requests not admitted yet
        self._active: list[Row] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="mof-engine", daemon=True)
        self._recent: collections.deque = collections.deque()     # (time, tokens) of the last ticks

    def start(self) -> None:
        self._thread.start()

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def status(self) -> dict:
        """/health's counts: rows decoding (``active``), rows admitted and waiting for a batch slot
        (``queued``), requests in the admission queue (``queue_length``) and how long the oldest of
        them has waited (``queue_wait_s``). A local server and each Ray replica report this dict."""
        with self._cond:
            oldest = self._queue[0].submitted if self._queue else None
            length = len(self._queue)
        wait = (time.perf_counter() - oldest) if oldest is not None else 0.0
        return {"active": self.active, "queued": self.waiting, "queue_length": length,
                "queue_wait_s": round(wait, 3)}

    # Submitting -------------------------------------------------------------------------
    def submit(self, job: Job, sink: Sink, on_admit: Optional[Callable] = None) -> Ticket:
        """Admit ``job``'s rows, or queue the request when they do not fit (``ticket.admitted`` says
        which; ``on_admit`` is called when a queued one is admitted). ApiError 429 when the queue is
        full, 400 when ``n`` can never fit, 503 when stopping, 500 when its rows cannot be made (a
        bug or a broken bundle: this request fails, the server goes on); events go to ``sink``."""
        if job.n > self.config.max_conversations:        # could never be admitted: not a retryable 429
            raise ApiError(400, f"n: at most {self.config.max_conversations}, the rows this server holds at once "
                                f"({flag('max_conversations')})", param="n", code="invalid_value")
        try:
            ticket, entry = self._ticket(job, sink, on_admit)
        except ApiError:
            raise
        except Exception as e:
            log.error("cannot start a generation", exc_info=e)
            raise ApiError(500, f"cannot start the generation: {type(e).__name__}: {e}",
                           code="generation_failed") from None
        with self._cond:
            if self._stopping:
                raise ApiError(503, "the server is shutting down", code="unavailable", retry_after=5)
            if not self._queue and self._fits(ticket):
                self._admit(ticket)
            elif len(self._queue) >= self.config.max_queue:
                self.metrics.rejected.labels("queue_full").inc()
                raise ApiError(429, f"the server holds {self.config.max_conversations} conversations and "
                                    f"{self.config.max_queue} waiting requests; try again shortly",
                               code="queue_full", retry_after=1)
            else:
                self._queue.append(ticket)
                self.metrics.queue_length.set(len(self._queue))
        if self.cache is not None and ticket.mode == "stream":
            self.metrics.cache_lookup(entry is not None)
        return ticket

    def _ticket(self, job: Job, sink: Sink, on_admit) -> tuple[Ticket, Optional[Entry]]:
        """``job``'s ticket and rows (restored from the state cache's entry when there is one)."""
        model = self.model
        decoding = decoding_of(model, job)
        mode, R = decoding.mode, decoding.refill_every
        ticket = Ticket(sink=sink, top_logprobs=job.top_logprobs, mode=mode, refill_every=R, on_admit=on_admit,
                        submitted=time.perf_counter())
        entry = self._lookup(job.prompt, R) if (self.cache is not None and mode == "stream") else None
        for i in range(job.n):
            sampling = job.sampling
            if sampling.seed is not None and i:
                sampling = dataclasses.replace(sampling, seed=sampling.seed + i)
            if entry is not None:
                decoder = StreamDecoder.restore(model, entry.snapshot)
                gen = Generation(model.vocab, job.prompt[len(entry.text):], sampling, model.config.window,
                                 history=entry.text)
            else:
                decoder = make_decoder(model, mode, R)
                gen = Generation(model.vocab, job.prompt, sampling, model.config.window)
            usage = Usage(prompt_tokens=len(job.prompt), cached_tokens=len(entry.text) if entry else 0)
            ticket.rows.append(Row(ticket, i, gen, decoder, usage))
        return ticket, entry

    def _lookup(self, prompt: str, R: int) -> Optional[Entry]:
        """The cached state ``prompt`` continues, if any: a cache that fails is a miss, not a failure."""
        try:
            return self.cache.lookup(prompt, R)
        except Exception as e:
            log.warning("state cache: lookup failed, reading the prompt afresh (%s: %s)", type(e).__name__, e)
            return None

    def _fits(self, ticket: Ticket) -> bool:
        return len(self._active) + len(self._waiting) + len(ticket.rows) <= self.config.max_conversations

    def _admit(self, ticket: Ticket) -> None:
        """(Under the lock.) The ticket's rows join the rows waiting for a batch slot."""
        now = time.perf_counter()
        for row in ticket.rows:
            row.admitted = now
            row.usage.queue_ms = (now - ticket.submitted) * 1000
        ticket.admitted = True
        self.metrics.queue_wait.observe(now - ticket.submitted)
        self._waiting.extend(ticket.rows)
        self._cond.notify()

    def _admit_queued(self) -> None:
        """(Under the lock.) Admit queued requests, oldest first, while their rows fit."""
        while self._queue:
            head = self._queue[0]
            if head.cancelled:
                self._queue.popleft()
                continue
            if not self._fits(head):
                break
            self._queue.popleft()
            self._admit(head)
            if head.on_admit is not None:
                head.on_admit(None)
        self.metrics.queue_length.set(len(self._queue))

    def withdraw(self, ticket: Ticket, timed_out: bool = False) -> bool:
        """Take a request out of the admission queue (its wait ran out, or its client left). False if
        it was admitted meanwhile (its rows are decoding: cancel it to stop them)."""
        with self._cond:
            if ticket.admitted:
                return False
            with contextlib.suppress(ValueError):
                self._queue.remove(ticket)
            self.metrics.queue_length.set(len(self._queue))
            if timed_out:
                self.metrics.rejected.labels("queue_timeout").inc()
            self._admit_queued()              # a large head that left may let smaller ones in
            return True

    def stop(self, timeout: float = 0.0) -> None:
        """Let the rows in flight finish for up to ``timeout`` seconds, then end the rest with an error."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            while (self._active or self._waiting or self._queue) and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, min(0.1, deadline - time.monotonic())))
            for ticket in self._queue:
                if ticket.on_admit is not None:
                    ticket.on_admit(ApiError(503, "the server is shutting down", code="unavailable", retry_after=5))
            self._queue.clear()
            for row in list(self._active) + list(self._waiting):
                if row.finishing:             # its reply is complete: say so (its state is not cached)
                    self._finish(row)
                else:
                    row.emit(Event(row.choice, "error", message="the server shut down before the reply ended"))
            self._active.clear()
            self._waiting.clear()
            self._cond.notify_all()
        self._thread.join(timeout=60)            # the tick in progress ends first (onnxruntime must not
                                                 # be torn down under a running session)

    # The loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                if not self._loop_once():
                    return
            except Exception as e:     # outside a tick (admitting, counting): end the rows in flight, go on
                with self._cond:
                    rows = list(self._active) + list(self._waiting)
                    self._active, self._waiting = [], collections.deque()
                    self._fail(rows, e)
                    self._cond.notify_all()

    def _loop_once(self) -> bool:
        """One turn of the engine's loop: wait for rows, run a tick, let finished rows leave.
        False when the engine has stopped."""
        with self._cond:
            while not self._active and not self._waiting and not self._stopping:
                self._cond.wait()
            if self._stopping and not self._active and not self._waiting:
                return False
            while self._waiting and len(self._active) < self.config.max_batch:
                self._active.append(self._waiting.popleft())
            rows = list(self._active)
        try:
            done = self._tick(rows)
        except Exception as e:     # never leave the loop: every later request would hang
            done = self._fail(rows, e)
        with self._cond:
            self._active = [r for r in self._active if r not in done]
            if done and self._queue:
                self._admit_queued()
            self._cond.notify_all()
            self.metrics.conversations(len(self._active), len(self._waiting))
        return True

    def _tick(self, rows: list[Row]) -> set:
        """One read per row, batched; returns the rows that are finished."""
        done = set()
        live = []
        for row in rows:
            if row.ticket.cancelled and not row.finishing:
                done.add(row)
                self.metrics.cancelled.inc()
            else:
                live.append(row)
        if not live:
            return done
        try:
            live = self._schedule(live)
            reads = [row.read for row in live]
            for row in live:
                row.read = None
            t0 = time.perf_counter()
            results = run_reads(self.model, reads, self.config.max_batch)
            self.metrics.tick(len(live), time.perf_counter() - t0)
        except Exception as e:         # a bug or a broken bundle: fail these rows, keep serving
            return done | self._fail(live, e)
        generated = 0
        for row, (logits, state) in zip(live, results):
            try:
                generated += self._take(row, logits, state, done)
            except Exception as e:     # this row's bug must not stop the others
                done |= self._fail([row], e)
        self._throughput(generated)
        return done

    def _schedule(self, rows: list[Row]) -> list[Row]:
        """Plan each row's next read (kept until it runs) and pick this tick's rows: every one-token
        step, and at most ``max_window_reads`` window reads (prompts, refills, exact windows),
        those that have waited longest first — so a burst of new prompts or of refills never holds
        the other rows' tokens for more than a few window passes. A row's reads stay the same,
        in the same order; only their timing moves."""
        for row in rows:
            if row.read is None:
                row.read = row.decoder.plan(row.generation.take_unread())
        window = [r for r in rows if r.read.kind != STEP]
        if len(window) <= self.config.max_window_reads:
            return rows
        window.sort(key=lambda r: -r.waited)
        later = set(window[self.config.max_window_reads:])
        for row in later:
            row.waited += 1
        for row in window[:self.config.max_window_reads]:
            row.waited = 0
        return [r for r in rows if r not in later]

    def _fail(self, rows: list, error: Exception) -> set:
        """End ``rows`` with an error event (the client gets a 500, or an SSE error event). A row
        that was finishing has its whole reply already: it ends with its "done" (its state is not cached)."""
        log.error("generation failed for %d row(s)", len(rows), exc_info=error)
        for row in rows:
            try:
                if row.finishing:
                    self._finish(row)
                else:
                    row.emit(Event(row.choice, "error", status=500,
                                   message=f"generation failed: {type(error).__name__}: {error}"))
            except Exception as e:      # an event that cannot be sent: its client has nobody listening
                log.error("cannot end a failed row: %s: %s", type(e).__name__, e)
        return set(rows)

    def _take(self, row: Row, logits: np.ndarray, state, done: set) -> int:
        """Give ``row`` its read's result: sample its next token, or (finishing) cache it.
        Returns the tokens generated (0 or 1)."""
        before = row.decoder.refills
        row.decoder.commit(logits, state)
        row.usage.refills += row.decoder.refills - before
        if row.finishing:                       # its last token is read: keep what it read, then say done
            self._remember(row)
            self._finish(row)
            done.add(row)
            return 0
        self._advance(row, logits)
        gen = row.generation
        now = time.perf_counter()
        if gen.generated == 1:
            row.first_token = now
            row.usage.prompt_ms = (now - row.admitted) * 1000
        if gen.done:
            row.usage.completion_tokens = gen.generated
            row.usage.decode_ms = (now - row.first_token) * 1000 if gen.generated else 0.0
            row.done_event = Event(row.choice, "done", finish_reason="stop" if gen.stopped_by == "stop" else "length",
                                   usage=row.usage)
            if self.cache is not None and row.decoder.mode == "stream":
                row.finishing = True            # "done" once its state is cached (next tick)
            else:
                self._finish(row)
                done.add(row)
        return 1

    def _finish(self, row: Row) -> None:
        self.metrics.finished(row.usage)
        row.emit(row.done_event)

    def _advance(self, row: Row, logits: np.ndarray) -> None:
        gen = row.generation
        released = gen.advance(logits)
        top = row.ticket.top_logprobs
        if top is not None:
            row._unreleased.append(self._logprob(gen.token, logits, top))
        if not released and not gen.done:
            return
        entries = []
        if top is not None:                          # the tokens whose text is out now
            n = len(released)
            while row._unreleased and n > 0:
                entry = row._unreleased.pop(0)
                n -= len(entry[0])
                entries.append(entry)
        if released or entries:
            row.emit(Event(row.choice, "text", text=released, logprobs=entries))

    def _logprob(self, token: int, logits: np.ndarray, top: int) -> tuple:
        """The model's log-probability of ``token`` (softmax of the raw logits, before penalty and
        temperature) and its ``top`` likeliest alternatives."""
        x = logits.astype(np.float64)
        lp = x - x.max()
        lp -= np.log(np.exp(lp).sum())
        tokens = self.model.vocab.tokens
        alts = []
        if top:
            best = np.argpartition(-lp, top - 1)[:top]
            best = best[np.argsort(-lp[best], kind="stable")]
            alts = [(tokens[i], float(lp[i])) for i in best]
        return tokens[token], float(lp[token]), alts

    def _remember(self, row: Row) -> None:
        """Keep the row's state; a cache that fails costs the next turn's hit, never this reply."""
        try:
            self.cache.put(Entry(row.generation.text, row.decoder.snapshot()))
        except Exception as e:
            log.warning("state cache: cannot keep a state (%s: %s)", type(e).__name__, e)

    def _throughput(self, tokens: int) -> None:
        now = time.monotonic()
        self._recent.append((now, tokens))
        while self._recent and self._recent[0][0] < now - 5.0:
            self._recent.popleft()
        span = now - self._recent[0][0] if len(self._recent) > 1 else 0.0
        total = sum(t for _, t in list(self._recent)[1:])
        self.metrics.decode_rate.set(total / span if span > 0 else 0.0)
