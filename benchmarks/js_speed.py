"""The JavaScript package's decode speed next to mof.runtime's, side by side in one script.

    python benchmarks/js_speed.py [--bundle DIR] [--precision fp32|int8] [--rounds 3] [--no-browser] [--json FILE]

One chat turn — the same text, the same seeded sampling, so every runtime decodes the same 256 tokens
(checked) — is decoded by, interleaved round after round:
  python            mof.runtime (ChatSession) on onnxruntime (the baseline); and with 1 intra-op thread
  node / ort-node   js/ on onnxruntime-node (Node, Electron's main process); and with 1 intra-op thread
  node / ort-web    js/ on onnxruntime-web's WebAssembly build in Node, one thread
  chromium          the page mof-web writes, in headless Chromium (http.server on 127.0.0.1):
                    one thread, and two when the page is cross-origin isolated
Decode tokens/s is tokens after the first / the time after the prompt was read (Generator's and the
page's own figure); each runtime's median over the rounds and its ratio to Python's are printed with
the machine (mof.measure.machine). Needs node, `npm ci --prefix js`, and for the browser playwright
and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from mof.measure.machine import describe_machine, measured_on
from mof.runtime import DEFAULT_BUNDLE, Model, SamplingConfig
from mof.runtime.chat_session import ChatSession

ROOT = Path(__file__).resolve().parents[1]
TEXT = "写一首很长的诗"
SAMPLING = {"seed": 3, "temperature": 1.5, "max_tokens": 256}   # the demo writes all 256 tokens with these


def python_turn(model: Model) -> dict:
    gen = ChatSession(model, SamplingConfig(**SAMPLING)).turn(TEXT)
    reply = "".join(gen)
    return {"tokens": gen.stats.generated_tokens, "tokens_per_s": gen.stats.decode_tokens_per_s, "reply": reply}


def node_turn(flavour: str, precision: str, threads: int | None = None) -> dict:
    cmd = ["node", str(ROOT / "js" / "bench" / "speed.mjs"), flavour, precision, TEXT, json.dumps(SAMPLING)]
    proc = subprocess.run(cmd + ([str(threads)] if threads else []), capture_output=True, text=True, timeout=600,
                          cwd=ROOT / "js")
    if proc.returncode:
        sys.exit(f"js_speed: {flavour} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


class Browser:
    """The mof-web page in headless Chromium, served plainly and cross-origin isolated."""

    def __init__(self, precision: str):
        sys.path.insert(0, str(ROOT / "tests" / "web"))
        from conftest import static_server            # the tests' servers: 127.0.0.1, stopped on exit
        from playwright.sync_api import sync_playwright
        from mof.web.cli import main
        self.tmp = Path(tempfile.mkdtemp(prefix="js_speed."))
        assert main(["-o", str(self.tmp / "site"), "--precision", precision]) == 0
        self.static_server = static_server
        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])

    def turn(self, isolated: bool) -> dict:
        with self.static_server(self.tmp / "site", isolated=isolated) as url:
            page = self.browser.new_page()
            page.set_default_timeout(120_000)
            page.goto(url)
            page.wait_for_function("document.getElementById('status').dataset.state !== 'loading'")
            page.click("#settings summary")
            page.fill("#max-tokens", str(SAMPLING["max_tokens"]))
            page.fill("#seed", str(SAMPLING["seed"]))
            page.fill("#temperature", str(SAMPLING["temperature"]))
            page.fill("#prompt", TEXT)
            page.press("#prompt", "Enter")
            page.wait_for_function("document.querySelector('.message.assistant') && "
                                   "document.querySelector('.message.assistant').dataset.finish !== undefined")
            timings = page.inner_text("#timings")
            out = {"tokens_per_s": float(page.inner_text("#info-speed")), "timings": timings,
                   "reply": page.inner_text(".message.assistant .text"),
                   "threads": int(page.get_attribute("#info-backend", "data-threads"))}
            out["tokens"] = int(timings.split("; ")[1].split(" tokens")[0])
            page.close()
            return out

    def close(self):
        self.browser.close()
        self.pw.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true", help="skip the Chromium page")
    ap.add_argument("--json", type=Path, help="write the result as JSON to this file")
    args = ap.parse_args()
    model = Model.load(DEFAULT_BUNDLE, precision=args.precision)
    model1 = Model.load(DEFAULT_BUNDLE, precision=args.precision, threads=1)
    runs = {"python (onnxruntime)": lambda: python_turn(model),
            "python (onnxruntime, 1 thread)": lambda: python_turn(model1),
            "node, onnxruntime-node": lambda: node_turn("onnxruntime-node", args.precision),
            "node, onnxruntime-node (1 thread)": lambda: node_turn("onnxruntime-node", args.precision, 1),
            "node, onnxruntime-web (1 thread)": lambda: node_turn("onnxruntime-web", args.precision, 1)}
    browser = None
    if not args.no_browser:
        browser = Browser(args.precision)
        runs["chromium page (1 thread)"] = lambda: browser.turn(False)
        runs["chromium page (isolated, threads)"] = lambda: browser.turn(True)
    results = {name: [] for name in runs}
    try:
        for _ in range(args.rounds):
            for name, run in runs.items():
                results[name].append(run())
    finally:
        if browser:
            browser.close()
    base = statistics.median(r["tokens_per_s"] for r in results["python (onnxruntime)"])
    reference = results["python (onnxruntime)"][0]["reply"]
    print(f"{DEFAULT_BUNDLE.name} {args.precision}, one chat turn of {SAMPLING['max_tokens']} tokens, "
          f"median of {args.rounds} rounds; {describe_machine(measured_on())}")
    table = {}
    for name, rs in results.items():
        tps = statistics.median(r["tokens_per_s"] for r in rs)
        same = all(r["reply"] == reference for r in rs)
        extra = f", {rs[0]['threads']} threads" if "threads" in rs[0] else ""
        table[name] = {"tokens_per_s": tps, "over_python": tps / base, "same_reply_as_python": same,
                       "tokens": rs[0]["tokens"]}
        print(f"  {name:36s} {tps:7.1f} tok/s  {tps / base:5.2f}x python  same reply: {same}{extra}")
    if args.json:
        args.json.write_text(json.dumps({"precision": args.precision, "results": table,
                                         "machine": measured_on()}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
