"""mof.serve: an OpenAI-compatible HTTP server for mof bundles (``mof-serve``; the [serve] extra).

One engine thread owns the model and decodes every active conversation with one graph call per
tick (continuous batching, ``engine.py``); a state cache keyed by the text a conversation has read
lets a follow-up turn read only its new message (``cache.py``); ``app.py`` is the FastAPI app.
Imports mof.runtime, never the reverse.
"""
