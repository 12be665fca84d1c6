"""Shutting down without losing a request or printing a traceback: uvicorn's server, with the
app's drain run between "stop listening" and uvicorn's own shutdown (and, once it listens, the
port told to the app for its ready line).

What uvicorn does by itself on SIGTERM / Ctrl-C (uvicorn/server.py ``Server.shutdown``): it closes
the listening sockets, then calls ``shutdown()`` on every connection — an idle keep-alive
connection is closed at once (a request the client sends on it then gets no answer at all), a busy
one is closed after its response — then waits ``timeout_graceful_shutdown`` seconds for the
connections to go and cancels the tasks left ("timeout graceful shutdown exceeded", with a
CancelledError traceback from each cancelled request).

``DrainingServer`` closes the listening sockets, then runs ``Server.drain`` (app.py) while every
connection stays open: a request arriving on an open connection gets a 503 with Retry-After and
``Connection: close``, open requests finish or, when ``--drain-seconds`` run out, are ended with an
error. Connections whose response is still unfinished after that (a client that stopped reading)
are closed; only then does uvicorn's own shutdown run, and it finds nothing left to cancel.
"""

from __future__ import annotations

import logging

import uvicorn

log = logging.getLogger("mof.serve")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, server, drain_seconds: float):
        """``server``: the app's ``Server`` (app.state.server); ``drain_seconds``: --drain-seconds."""
        super().__init__(config)
        self.mof_server, self.drain_seconds = server, drain_seconds

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.servers and self.servers[0].sockets:        # bound: the app's ready line can give the port
            self.mof_server.listening(self.servers[0].sockets[0].getsockname()[1])

    async def shutdown(self, sockets=None) -> None:
        for listening in self.servers:          # no new connections from now on
            listening.close()
        for sock in sockets or []:
            sock.close()
        await self.mof_server.drain(self.drain_seconds)
        self._close_unfinished()
        await super().shutdown(sockets)

    def _close_unfinished(self) -> None:
        """Close the connections whose response is still unfinished (their requests have been
        ended: a client that does not read its answer must not hold the shutdown up)."""
        closed = 0
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if cycle is not None and not cycle.response_complete and transport is not None:
                transport.close()
                closed += 1
        if closed:
            log.warning("mof-serve: closed %d connection(s) whose client did not take its answer", closed)
