"""ServeConfig: every setting of a server, with its default (the one place defaults live)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class ServeConfig:
    model: Optional[Path] = None          # bundle directory; None = the demo shipped with mof
    precision: str = "fp32"               # which graphs to run: fp32, int8 or int4
    host: str = "127.0.0.1"               # address to listen on (loopback: this machine only)
    port: int = 8000                      # TCP port
    form: Optional[str] = None            # chat messages' template (runtime/chat.py); None = the bundle's
    api_key: Optional[str] = None         # if set, /v1/* requires "Authorization: Bearer KEY"
    max_batch: int = 32                   # conversations decoded together, one row each per graph call
    max_window_reads: int = 4             # prompts, refills and exact windows read per tick at most
    max_conversations: int = 256          # requests admitted at once (decoding + waiting); more -> 429
    threads: Optional[int] = None         # onnxruntime intra-op threads; None = one per core
    provider: Optional[str] = None        # onnxruntime execution provider (--provider); None = the CPU's
    cache_mb: float = 256.0               # state cache bound, MiB of states and texts (0 = no cache)
    state_dir: Optional[Path] = None      # keep the state cache in this folder across restarts
    max_body_bytes: int = 1 << 20         # request bodies above this get 413
    max_prompt_chars: int = 65536         # rendered prompts above this get 400 (context_length_exceeded)
    max_tokens_limit: int = 4096          # the most max_tokens a request may ask for
    max_n: int = 8                        # the most choices (n) per request
    drain_seconds: float = 30.0           # on SIGTERM / Ctrl-C: time open requests get to finish
    model_name: Optional[str] = None      # the id /v1/models lists; None = the bundle folder's stem
