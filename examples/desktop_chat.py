#!/usr/bin/env python3
"""A small Tk chat window on mof.runtime: the reply streams in token by token from a worker thread.

    pip install -e .                      # the runtime: numpy + onnxruntime (Tk comes with Python)
    python examples/desktop_chat.py       # the demo model shipped with mof
    python examples/desktop_chat.py --model t6.mof --int8 --form chat

How it is built (the pattern to copy into an app):
- one ``Model`` loaded at start-up, one ``ChatSession`` per conversation (history + the stream
  decoder's state); the session is touched by the Tk thread only;
- ``send()`` starts the reply (``session.turn``) and hands the ``Generator`` to a worker thread,
  which iterates it and puts each piece on a queue; the Tk thread drains the queue every few
  milliseconds with ``after`` — the window never waits for the model;
- ``stop()`` sets an event the worker checks between tokens; the reply so far stays in the
  history, as mof-run does on Ctrl-C; ``new_conversation()`` clears history and state.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from pathlib import Path
from typing import Optional

try:
    import tkinter as tk
    from tkinter import ttk
except ImportError:          # Debian/Ubuntu ship Tk for Python separately (python3-tk)
    tk = ttk = None

from mof.runtime import DEFAULT_BUNDLE, Model, SamplingConfig
from mof.runtime.chat import FORMS
from mof.runtime.cli_common import (add_precision_flags, add_provider_flag, add_sampling_arguments, number,
                                    run_command, sampling_from_args, utf8_stdio)
from mof.runtime.generate import MODES
from mof.runtime.chat_session import ChatSession

PROG = "desktop_chat.py"
POLL_MS = 25
# A font that has Chinese glyphs, if the system has one (else Tk's default and fontconfig's fallback).
CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
             "Microsoft YaHei", "PingFang SC", "Hiragino Sans GB", "SimSun")


def pick_font(root, size: int = 12) -> tuple:
    from tkinter import font
    families = set(font.families(root))
    return (next((f for f in CJK_FONTS if f in families), "TkDefaultFont"), size)


class ChatWindow:
    """The window. Tests and apps drive it through ``entry``, ``send()``, ``stop()``,
    ``new_conversation()``, ``transcript_text()``, ``status_text()`` and ``busy``."""

    def __init__(self, root, model: Model, sampling: SamplingConfig, mode: str, form: str):
        self.root = root
        self.model = model
        self.mode = mode
        self.session = ChatSession(model, sampling, mode, form=form)
        self.queue: "queue.Queue[tuple]" = queue.Queue()
        self.worker: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._gen_id = 0                 # replies of a cleared conversation are ignored
        self._clear_after_reply = False
        self._replies = 0                # finished replies (for tests and apps waiting on one)
        self._closed = False
        self._describe = (f"{model.bundle_dir.name} · {self.session.decoding.describe()} · {model.precision} · "
                          f"{form} form")

        text_font = pick_font(root)
        root.title(f"mof chat — {model.bundle_dir.name}")
        root.minsize(480, 320)
        root.protocol("WM_DELETE_WINDOW", self.close)

        body = ttk.Frame(root, padding=(8, 8, 8, 4))
        body.pack(fill="both", expand=True)
        self.transcript = tk.Text(body, wrap="char", height=16, width=60, state="disabled",
                                  relief="flat", padx=8, pady=6, background="#fbfbf8",
                                  font=text_font, spacing1=2, spacing3=2)
        scroll = ttk.Scrollbar(body, orient="vertical", command=self.transcript.yview)
        self.transcript.configure(yscrollcommand=scroll.set)
        self.transcript.tag_configure("who", foreground="#6b6b6b", font=("DejaVu Sans", 9, "bold"))
        self.transcript.tag_configure("user", foreground="#1d4f91")
        self.transcript.tag_configure("model", foreground="#1f1f1f")
        self.transcript.tag_configure("note", foreground="#a33a3a", font=("DejaVu Sans", 9, "italic"))
        self.transcript.grid(row=0, column=0, sticky="nsew")
        scroll.grid(row=0, column=1, sticky="ns")
        body.rowconfigure(0, weight=1)
        body.columnconfigure(0, weight=1)

        bar = ttk.Frame(root, padding=(8, 4))
        bar.pack(fill="x")
        self.entry = ttk.Entry(bar, font=text_font)
        self.entry.pack(side="left", fill="x", expand=True, padx=(0, 6))
        self.entry.bind("<Return>", lambda _e: self.send())
        self.send_button = ttk.Button(bar, text="Send", command=self.send)
        self.stop_button = ttk.Button(bar, text="Stop", command=self.stop, state="disabled")
        self.new_button = ttk.Button(bar, text="New conversation", command=self.new_conversation)
        for b in (self.send_button, self.stop_button, self.new_button):
            b.pack(side="left", padx=2)

        note = getattr(model, "onnxruntime_note", None)     # this onnxruntime not known to reproduce it
        self.status = tk.StringVar(value=f"ready · {self._describe}" + (f" · note: {note}" if note else ""))
        ttk.Label(root, textvariable=self.status, relief="sunken", anchor="w",
                  padding=(6, 2)).pack(fill="x", side="bottom")
        self.entry.focus_set()
        self.root.after(POLL_MS, self._poll)

    # The widget API -----------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.worker is not None

    @property
    def replies(self) -> int:
        return self._replies

    def transcript_text(self) -> str:
        return self.transcript.get("1.0", "end-1c")

    def status_text(self) -> str:
        return self.status.get()

    def send(self) -> bool:
        """Send what the entry holds; False when it is empty or a reply is still running."""
        text = self.entry.get().strip()
        if not text or self.busy:
            return False
        try:
            gen = self.session.turn(text)
        except Exception as e:          # e.g. a prompt the model cannot read: say it, stay open
            self.status.set(f"error: {e}")
            return False
        self.entry.delete(0, "end")
        self._write("You\n", "who")
        self._write(text + "\n", "user")
        self._write("Model\n", "who")
        self._stop = threading.Event()
        self._gen_id += 1
        self.worker = threading.Thread(target=self._work, args=(gen, self._stop, self._gen_id),
                                       name="mof-reply", daemon=True)
        self.send_button.state(["disabled"])
        self.stop_button.state(["!disabled"])
        self.status.set(f"thinking… · {self._describe}")
        self.worker.start()
        return True

    def stop(self) -> None:
        """Stop the running reply after the current token (what was said so far is kept)."""
        self._stop.set()

    def new_conversation(self) -> None:
        """Forget the history and the recurrent state; a running reply is stopped first."""
        if self.busy:
            self._stop.set()
            self._clear_after_reply = True
        else:
            self.session.clear()
        self._gen_id += 1
        self.transcript.configure(state="normal")
        self.transcript.delete("1.0", "end")
        self.transcript.configure(state="disabled")
        self.status.set(f"new conversation · {self._describe}")

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        self.root.destroy()

    # Worker thread: iterate the generator, never touch Tk ------------------------------------
    def _work(self, gen, stop: threading.Event, gen_id: int) -> None:
        interrupted, error = False, None
        try:
            for piece in gen:
                st = gen.stats
                self.queue.put(("piece", gen_id, piece, st.generated_tokens, st.decode_tokens_per_s))
                if stop.is_set():
                    interrupted = True
                    break
        except Exception as e:   # surface model errors in the window instead of losing them
            interrupted, error = True, f"{type(e).__name__}: {e}"
        self.queue.put(("done", gen_id, gen, interrupted, error))

    # Tk thread: drain the queue ----------------------------------------------------------------
    def _poll(self) -> None:
        if self._closed:
            return
        text, progress = [], None
        try:
            while True:
                msg = self.queue.get_nowait()
                if msg[0] == "piece":
                    _, gid, piece, n, tps = msg
                    if gid == self._gen_id:
                        text.append(piece)
                        progress = (n, tps)
                else:
                    if text:
                        self._write("".join(text), "model")
                        text = []
                    self._finish(*msg[1:])
        except queue.Empty:
            pass
        if text:
            self._write("".join(text), "model")
        if progress and self.busy:
            n, tps = progress
            self.status.set(f"{n} tokens · {tps:.1f} tok/s · {self._describe}")
        self.root.after(POLL_MS, self._poll)

    def _finish(self, gen_id: int, gen, interrupted: bool, error: Optional[str]) -> None:
        self.worker = None
        self.session.finish(gen, interrupted=interrupted)
        if self._clear_after_reply:
            self.session.clear()
            self._clear_after_reply = False
        self._replies += 1
        self.send_button.state(["!disabled"])
        self.stop_button.state(["disabled"])
        if gen_id != self._gen_id:          # the conversation was cleared meanwhile
            return
        st = gen.stats
        if error:
            self._write(f"\n[error: {error}]\n\n", "note")
            self.status.set(f"error: {error}")
            return
        ends_with_newline = self.transcript.get("end-2c", "end-1c") == "\n"
        self._write((" [stopped]\n" if interrupted else "" if ends_with_newline else "\n") + "\n", "note")
        self.status.set(f"{st.generated_tokens} tokens · {st.decode_tokens_per_s:.1f} tok/s · prefill "
                        f"{st.prompt_tokens} tok in {st.prefill_s * 1000:.0f} ms"
                        f"{' · stopped' if interrupted else ''} · {self._describe}")
        self.transcript.see("end")

    def _write(self, text: str, tag: str) -> None:
        self.transcript.configure(state="normal")
        self.transcript.insert("end", text, tag)
        self.transcript.configure(state="disabled")
        self.transcript.see("end")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="A desktop chat window on mof.runtime: the reply streams in token by token "
                    "from a worker thread; Stop ends it, New conversation clears the history.",
        epilog="The form defaults to the one the bundle records (mof-export --form): the demo model "
               "records chat (xiaothink's chat template; it was trained on Chinese dialogues as well "
               "as poems); --form raw continues each message as plain text.")
    p.add_argument("--model", metavar="BUNDLE", type=Path, default=DEFAULT_BUNDLE,
                   help="bundle directory (default: the demo model shipped with mof)")
    add_precision_flags(p)
    p.add_argument("--mode", choices=MODES,
                   help="default: the bundle's measured recommendation")
    p.add_argument("--form", choices=FORMS,
                   help="conversation template (default: the form the bundle was trained for)")
    add_sampling_arguments(p.add_argument_group("sampling"))
    p.add_argument("--threads", type=number(int, lambda v: v >= 1, "an integer >= 1"),
                   help="onnxruntime intra-op threads (default: onnxruntime's choice)")
    add_provider_flag(p)
    p.add_argument("--self-check", action="store_true",
                   help="before the window opens, recompute the bundle's reference logits on this "
                        "machine (mof-check) and stop if they differ from the export's")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def load(args) -> dict:
    """The model and settings ``args`` name (errors here come before any window opens)."""
    model = Model.load(args.model, precision=args.precision, threads=args.threads, providers=args.provider,
                       self_check=args.self_check)
    if model.self_check_result is not None:
        print(f"{PROG}: self-check: {model.self_check_result.line()}", file=sys.stderr)
    return {"model": model, "sampling": sampling_from_args(args),
            "mode": args.mode or model.recommended_mode, "form": args.form or model.form}


def open_window(args, root=None) -> ChatWindow:
    """Load the model named by ``args`` and build its window (on ``root``, or a new Tk root)."""
    settings = load(args)
    return ChatWindow(root if root is not None else tk.Tk(), **settings)


def main(argv=None) -> int:
    utf8_stdio()
    args = build_parser().parse_args(argv)

    def work() -> int:
        if tk is None:
            print(f"{PROG}: error: this Python has no tkinter (Debian/Ubuntu: apt-get install python3-tk)",
                  file=sys.stderr)
            return 1
        settings = load(args)
        try:
            root = tk.Tk()
        except tk.TclError as e:
            print(f"{PROG}: error: cannot open a window: {e}", file=sys.stderr)
            return 1
        ChatWindow(root, **settings)
        root.mainloop()
        return 0

    return run_command(PROG, work, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
