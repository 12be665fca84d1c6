"""mof-run's conversation: read a message (one line, a paste, or \"\"\" ... \"\"\"), run a command or
a turn, stream the reply, record it (--transcript, --save-state). The reader is line_reader's."""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import chat_commands
from .errors import MofError
from .chat_session import ChatSession
from .transcript import Transcript

QUOTES = '"""'
LEAVE_HINT = "to leave: /bye or {eof}; Ctrl-C stops a reply; /help lists the commands"


class MultiLineCancelled(Exception):
    """Ctrl-C inside \"\"\" ... \"\"\"."""


class MultiLineUnclosed(Exception):
    """The input ended inside \"\"\" ... \"\"\"."""


def read_message(reader) -> tuple[str, bool]:
    """(text, multi): one line as typed (a paste of several lines stays one message), or the lines
    between a line that starts with \"\"\" and one that ends with \"\"\"."""
    line = reader.read()
    if not line.startswith(QUOTES):
        return line, False
    body = line[len(QUOTES):]
    if len(body) >= len(QUOTES) and body.endswith(QUOTES):          # \"\"\"one line\"\"\"
        return body[:-len(QUOTES)], True
    lines = [body] if body else []
    while True:
        try:
            line = reader.read(continuation=True)
        except KeyboardInterrupt:
            raise MultiLineCancelled from None
        except EOFError:
            raise MultiLineUnclosed from None
        if line.endswith(QUOTES):
            lines.append(line[:-len(QUOTES)])
            return "\n".join(lines).rstrip("\n"), True
        lines.append(line)


def stream_out(gen, one_line: bool = False) -> None:
    """Write pieces as they come; ``one_line`` writes newlines inside a reply as the two
    characters \\n (as the chat template encodes the user's), so piped output keeps one
    line per turn."""
    try:
        for piece in gen:
            sys.stdout.write(piece.replace("\n", "\\n") if one_line else piece)
            sys.stdout.flush()
    except OSError as e:
        if sys.platform == "win32" and e.errno == errno.EINVAL:
            raise BrokenPipeError(errno.EPIPE, "closed pipe") from None   # how Windows says it
        raise


def stats_line(gen, precision: str) -> str:
    st = gen.stats
    return (f"[{st.generated_tokens} tokens, prefill {st.prompt_tokens} tok at "
            f"{st.prefill_tokens_per_s:.0f} tok/s, decode {st.decode_tokens_per_s:.1f} tok/s, "
            f"mode {gen.mode}, {precision}]")


@dataclass
class ChatLoop:
    session: ChatSession
    reader: object                          # line_reader.TerminalReader or PipeReader
    interactive: bool                       # a person at a terminal: prompts, hints, stats
    prog: str = "mof-run"
    eof_key: str = "Ctrl-D"
    transcript: Optional[Transcript] = None
    save_state: Optional[Path] = None       # --save-state: after each turn

    def note(self, text: str) -> None:
        print(f"{self.prog}: {text}", file=sys.stderr)

    def run(self) -> int:
        failed = False                      # piped input only: a bad command makes the exit code 1
        while True:
            try:
                text, multi = read_message(self.reader)
            except EOFError:
                if self.interactive:
                    print(file=sys.stderr)
                return 1 if failed else 0
            except KeyboardInterrupt:
                if not self.interactive:
                    print(file=sys.stderr)
                    return 130
                self.note(LEAVE_HINT.format(eof=self.eof_key))
                continue
            except MultiLineCancelled:
                self.note("multi-line input cancelled; nothing was sent")
                continue
            except MultiLineUnclosed:
                self.note(f'the input ended inside {QUOTES} ... {QUOTES}; that message was not sent')
                return 0 if self.interactive else 1
            if not text.strip():
                continue
            if not multi and chat_commands.is_command(text):
                try:
                    outcome = chat_commands.run(text, self.session)
                except (MofError, OSError) as e:
                    failed = failed or not self.interactive     # a person at a terminal saw it
                    self.note(f"error: {e}" if isinstance(e, MofError) else
                              f"error: {e.strerror or e}" + (f" ({e.filename})" if e.filename else ""))
                    continue
                if outcome.leave:
                    return 1 if failed else 0
                if outcome.text:
                    print(outcome.text if "\n" in outcome.text else f"{self.prog}: {outcome.text}",
                          file=sys.stderr)
                if self.transcript:
                    self.transcript.event(outcome.event)
                continue
            self.turn(text)

    def turn(self, text: str) -> None:
        gen = self.session.turn(text)
        interrupted = False
        try:
            stream_out(gen, one_line=not self.interactive)
            self.session.finish(gen)
        except KeyboardInterrupt:
            interrupted = True
            self.session.finish(gen, interrupted=True)
            sys.stdout.write(" [stopped]")
        sys.stdout.write("\n")
        sys.stdout.flush()
        if self.interactive:
            print(stats_line(gen, self.session.model.precision), file=sys.stderr)
        if self.transcript:
            self.transcript.turn(self.session, text, gen, interrupted)
        if self.save_state:
            self.session.save(self.save_state)
