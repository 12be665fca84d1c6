"""mof.serve: an OpenAI-compatible HTTP server for mof bundles (``mof-serve``; the [serve] extra).

One engine thread owns the model and decodes every active conversation with one graph call per
tick (continuous batching, ``engine.py``), admitting requests through a bounded FIFO queue; a
state cache keyed by the text a conversation has read lets a follow-up turn read only its new
message (``cache.py``). ``app.py`` builds the FastAPI app from ``routes_*.py`` (completions,
info, tokens, the chat page in ``static/``) and ``http_common.py``; ``config.py`` defines every
setting once, for the flags (``cli.py``) and the Ray app (``ray_app.py``, ``ray_stats.py``).
Imports mof.runtime, never the reverse.
"""
