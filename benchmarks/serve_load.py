"""Load on mof-serve: aggregate decode throughput and latency at 1, 4, 16 and 64 concurrent streams.

    python benchmarks/serve_load.py [--model BUNDLE] [--int8] [--levels 1,4,16,64] [--tokens 64]
                                    [--requests 2] [--time-limit 600] [--name demo] [--ray --replicas N]
    python benchmarks/serve_load.py --burst 300        # 300 chats at once against mof-serve's defaults

With ``--burst N`` the server runs with its default capacity flags (none given) and N clients send
one streaming chat each at the same moment: the figures are how many completed, how many got a
429 or a 5xx, and the latency a burst costs (the admission queue absorbs what the slots cannot).

1. Baseline, in this process: one stream with mof.runtime's Generator (the bundle's decoding, the
   same sampling), decode tokens/s — what one conversation gets without a server.
2. Starts `mof-serve` (with --ray: `mof-serve --ray --replicas N`, a local Ray Serve) on 127.0.0.1
   (a free port) in a subprocess and, per level C, runs C clients
   at once, each streaming `--requests` completions one after another (httpx, SSE, a distinct
   prompt and seed per request), within a time limit.
3. Per level: requests, failures, aggregate tokens/s (completion tokens / wall time of the level)
   and its ratio to the one-stream baseline, p50/p95 time to first token and inter-token latency.
4. Writes benchmarks/results/<date>/serve_load_<name>.{json,md}, with the CPU's name. The load
   generator runs on the same machine as the server (2 cores here): its share is in the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "helpers"))
from serve_probe import free_port, wait_healthy  # noqa: E402  (the tests' helper: a free port, /health)
PROMPTS = ["床前明月光，", "春眠不觉晓，", "白日依山尽，", "红豆生南国，", "千山鸟飞绝，", "空山不见人，",
           "国破山河在，", "好雨知时节，"]


def graph_costs(model, batches=(1, 16, 64)) -> dict:
    """Where a row's time goes: ms of one step-graph call at each batch size, and of one refill
    (the chunk graph on K = W - R + 1 tokens, batch 1) at the bundle's recommended R."""
    from mof.runtime.state import State
    W, R = model.config.window, model.recommended_refill_every
    K = W - R + 1
    rng = np.random.default_rng(0)
    out = {"refill_K": K, "refill_every": R}

    def best(f, n=5):
        f()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times) * 1000
    _, state = model.refill(rng.integers(0, model.config.vocab_size, (1, K)).astype(np.int32))
    for B in batches:
        st = State.stack([state] * B, model.config)
        ids = rng.integers(0, model.config.vocab_size, B).astype(np.int32)
        out[f"step_ms_batch{B}"] = best(lambda: model.step(ids, st))
    ids = rng.integers(0, model.config.vocab_size, (1, K)).astype(np.int32)
    out["refill_ms"] = best(lambda: model.refill(ids), 3)
    return out


def baseline(bundle: Path, int8: bool, tokens: int, runs: int = 3) -> float:
    """One stream, mof.runtime alone: decode tokens/s (best of ``runs``)."""
    from mof.runtime import Generator, Model, SamplingConfig
    model = Model.load(bundle, int8=int8)
    best = 0.0
    for i in range(runs):
        gen = Generator(model, PROMPTS[i % len(PROMPTS)], SamplingConfig(max_tokens=tokens, seed=i, temperature=0.8))
        for _ in gen:
            pass
        best = max(best, gen.stats.decode_tokens_per_s)
    return best


async def one_request(client, url: str, model: str, i: int, tokens: int, chat: bool = False) -> dict:
    body = {"model": model, "max_tokens": tokens, "seed": i,
            "temperature": 0.8, "stream": True, "stream_options": {"include_usage": True}}
    if chat:
        body["messages"] = [{"role": "user", "content": f"{i}：{PROMPTS[i % len(PROMPTS)]}"}]
    else:
        body["prompt"] = PROMPTS[i % len(PROMPTS)]
    t0 = time.perf_counter()
    times, usage, done, error = [], None, False, None
    try:
        async with client.stream("POST", url + ("/v1/chat/completions" if chat else "/v1/completions"),
                                 json=body) as r:
            if r.status_code != 200:
                return {"ok": False, "error": f"HTTP {r.status_code}", "status": r.status_code}
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    break
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    error = chunk["error"]["message"]
                    break
                if chunk.get("usage"):
                    usage = chunk["usage"]
                if chunk["choices"] and (chunk["choices"][0].get("text")
                                         or chunk["choices"][0].get("delta", {}).get("content")):
                    times.append(time.perf_counter())
    except Exception as e:  # a failed request is a result, not a crash of the benchmark
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    ok = done and error is None and usage is not None and (chat or usage["completion_tokens"] == tokens)
    return {"ok": ok, "error": error, "status": 200, "ttft": times[0] - t0 if times else None,
            "itl": list(np.diff(times)), "tokens": usage["completion_tokens"] if usage else 0}


async def level(url: str, model: str, clients: int, requests: int, tokens: int, limit: float,
                chat: bool = False) -> dict:
    import httpx
    results: list[dict] = []

    async def worker(c: int, client) -> None:
        for k in range(requests):
            results.append(await one_request(client, url, model, c * requests + k, tokens, chat))

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=limit, limits=limits) as client:
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(worker(c, client) for c in range(clients))), timeout=limit)
        except asyncio.TimeoutError:
            pass
        wall = time.perf_counter() - t0
    expected = clients * requests
    ok = [r for r in results if r["ok"]]
    ttft = [r["ttft"] for r in ok]
    itl = [g for r in ok for g in r["itl"]]
    pct = lambda xs, q: float(np.percentile(xs, q) * 1000) if xs else float("nan")   # noqa: E731
    return {"clients": clients, "requests": expected, "completed": len(ok), "failed": expected - len(ok),
            "errors": sorted({str(r.get("error")) for r in results if not r["ok"]})[:3],
            "http_429": sum(r.get("status") == 429 for r in results),
            "http_5xx": sum((r.get("status") or 0) >= 500 for r in results),
            "not_finished": expected - len(results),
            "wall_s": wall, "tokens": sum(r["tokens"] for r in ok),
            "tokens_per_s": sum(r["tokens"] for r in ok) / wall,
            "ttft_p50_ms": pct(ttft, 50), "ttft_p95_ms": pct(ttft, 95),
            "itl_p50_ms": pct(itl, 50), "itl_p95_ms": pct(itl, 95)}


def main() -> int:
    from mof.measure.machine import cpu_name
    from mof.runtime import DEFAULT_BUNDLE
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=DEFAULT_BUNDLE, help="bundle (default: the demo)")
    p.add_argument("--int8", action="store_true")
    p.add_argument("--levels", default="1,4,16,64", help="concurrent streams per level (default 1,4,16,64)")
    p.add_argument("--tokens", type=int, default=64, help="tokens per request (default 64)")
    p.add_argument("--requests", type=int, default=2, help="requests per client, one after another (default 2)")
    p.add_argument("--time-limit", type=float, default=600, help="seconds per level at most (default 600)")
    p.add_argument("--max-batch", type=int, default=64, help="mof-serve --max-batch (default 64)")
    p.add_argument("--ray", action="store_true", help="serve with mof-serve --ray (a local Ray Serve)")
    p.add_argument("--replicas", type=int, default=1, help="with --ray: engine replicas (default 1)")
    p.add_argument("--burst", type=int, metavar="N",
                   help="instead of the levels: N streaming chats at once against mof-serve's default capacity "
                        "flags (--max-batch and --max-conversations are not passed)")
    p.add_argument("--name", default=None, help="result file suffix (default: the bundle's name)")
    p.add_argument("--out", type=Path, default=HERE / "results" / date.today().isoformat())
    args = p.parse_args()
    levels = [args.burst] if args.burst else [int(x) for x in args.levels.split(",")]
    name = (args.name or args.model.name.removesuffix(".mof")) + (f"_ray{args.replicas}" if args.ray else "") \
        + (f"_burst{args.burst}" if args.burst else "")
    if args.burst:
        args.requests = 1

    print(f"baseline: one stream with mof.runtime ({'int8' if args.int8 else 'fp32'}) ...", flush=True)
    one_before = baseline(args.model, args.int8, args.tokens)
    print(f"  {one_before:.1f} tokens/s", flush=True)
    from mof.runtime import Model
    costs = graph_costs(Model.load(args.model, int8=args.int8))
    print("  graph costs:", {k: round(v, 2) if isinstance(v, float) else v for k, v in costs.items()}, flush=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    capacity = [] if args.burst else ["--max-batch", str(args.max_batch), "--max-conversations", str(max(levels) * 2)]
    cmd = [sys.executable, "-m", "mof.serve.cli", "--model", str(args.model), "--port", str(port),
           "--log-level", "warning"] + capacity + (["--int8"] if args.int8 else []) \
        + (["--ray", "--replicas", str(args.replicas)] if args.ray else [])
    server = subprocess.Popen(cmd)
    rows = []
    try:
        import httpx
        if not wait_healthy(url, lambda: server.poll() is None, timeout=300, interval=0.2):
            raise SystemExit("mof-serve did not start")
        model_id = httpx.get(url + "/v1/models").json()["data"][0]["id"]
        asyncio.run(level(url, model_id, 1, 1, 8, 60))                        # warm-up
        for c in levels:
            print(f"{c} concurrent streams ...", flush=True)
            row = asyncio.run(level(url, model_id, c, args.requests, args.tokens, args.time_limit,
                                    chat=bool(args.burst)))
            rows.append(row)
            print(f"  {row['tokens_per_s']:.1f} tokens/s ({row['tokens_per_s'] / one_before:.2f}x one stream), "
                  f"failed {row['failed']} (429: {row['http_429']}, 5xx: {row['http_5xx']}), "
                  f"TTFT p50 {row['ttft_p50_ms']:.0f} ms, "
                  f"ITL p50 {row['itl_p50_ms']:.1f} ms", flush=True)
        metrics = httpx.get(url + "/metrics").text
        queue_waits = [ln for ln in metrics.splitlines() if ln.startswith("mof_queue_wait_seconds_")]
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()

    one_after = baseline(args.model, args.int8, args.tokens)        # the machine drifts: before and after
    one = (one_before + one_after) / 2
    for row in rows:
        row["vs_one_stream"] = row["tokens_per_s"] / one
    result = {"bundle": str(args.model), "name": name, "precision": "int8" if args.int8 else "fp32",
              "server": f"mof-serve --ray --replicas {args.replicas}" if args.ray else "mof-serve",
              "cpu": cpu_name(), "cores": __import__("os").cpu_count(), "tokens_per_request": args.tokens,
              "one_stream_tokens_per_s": one, "one_stream_before_after": [one_before, one_after],
              "graph_costs_ms": costs, "levels": rows,
              "batch_rows_per_tick": [ln for ln in metrics.splitlines() if ln.startswith("mof_batch_rows_")],
              "queue_wait_seconds": queue_waits,
              "server_flags": capacity or "mof-serve's defaults", "burst": args.burst}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"serve_load_{name}{'_int8' if args.int8 else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# {result['server']} under load: {name} ({result['precision']}, stream decoding as the bundle "
             "recommends)",
             "", f"CPU: {result['cpu']}, {result['cores']} cores; server and load generator on the same machine. "
             f"{args.tokens} tokens per request, {args.requests} requests per client; one stream with "
             f"mof.runtime alone: **{one:.1f} tokens/s** (mean of {one_before:.1f} before and {one_after:.1f} "
             f"after the levels). Graph costs: one step {costs['step_ms_batch1']:.2f} ms at batch 1, "
             f"{costs['step_ms_batch16']:.2f} ms at batch 16, {costs['step_ms_batch64']:.2f} ms at batch 64; "
             f"one refill of K = {costs['refill_K']} tokens (every R = {costs['refill_every']} tokens per "
             f"stream) {costs['refill_ms']:.1f} ms.", "",
             f"Server capacity flags: {' '.join(capacity) or 'the defaults'}" +
             (f"; a burst of {args.burst} streaming chats sent at once." if args.burst else "."), "",
             "| streams | requests | failed | 429 | 5xx | tokens/s | × one stream | TTFT p50 | TTFT p95 | ITL p50 | ITL p95 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['clients']} | {r['requests']} | {r['failed']} | {r['http_429']} | {r['http_5xx']} | "
                     f"{r['tokens_per_s']:.1f} | "
                     f"{r['vs_one_stream']:.2f} | {r['ttft_p50_ms']:.0f} ms | {r['ttft_p95_ms']:.0f} ms | "
                     f"{r['itl_p50_ms']:.1f} ms | {r['itl_p95_ms']:.1f} ms |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {stem}.json and .md")
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
