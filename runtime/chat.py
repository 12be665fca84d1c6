"""Conversation templates of xiaothink's QianyanModel.chat, reproduced byte for byte.

Strings are built by plain concatenation, as the reference does — no JSON escaping
(only '\\n' in the user's text becomes the two characters '\\\\n'). Forms:

- ``chat`` (form=1, the default): ``{"conversations": [HIS, {"role": "assistant", "content": "``
  where HIS is ``{"role": "user", "content": "TEXT"}`` plus, per later turn, the assistant's
  reply and the next user turn; stops at ``"}]}`` or ``"}``.
- ``instruct`` (form=0): ``{"instruction": "Human: TEXT\\nAssistant:", "input": "", "output": "``.
- ``pretrain``: ``{"text": "<s>TEXT`` (turns joined by a newline); stops at ``</s>`` or ``"}``.
- ``raw`` (form=None): the text itself, no history, no stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MofError

FORMS = ("chat", "instruct", "pretrain", "raw")
DEFAULT_FORM = "chat"          # mof-export --form's default: xiaothink's chat-trained models

STOPS = {
    "chat": ('"}]}', '"}'),
    "instruct": ('"}\r\n', '"}\n\r', '"}\n', '", "input"', '", "i', '"}', "\\nHuman:"),
    "pretrain": ("</s>", '"}'),
    "raw": (),
}

CLEAN_COMMAND = "[CLEAN]"


@dataclass
class Conversation:
    form: str = "chat"
    history: str = ""            # the reference's ``self.his``

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise MofError(f"form must be one of {', '.join(FORMS)}, got {self.form!r}")

    @property
    def stops(self) -> tuple[str, ...]:
        return STOPS[self.form]

    def clear(self) -> None:
        self.history = ""

    def prompt(self, text: str) -> str:
        """Add the user's turn to the history; return the prompt the model continues."""
        text = text.replace("\n", "\\n")
        if self.form == "instruct":
            if self.history:
                self.history += "\\nHuman: " + text + "\\nAssistant:"
            else:
                self.history += "Human: " + text + "\\nAssistant:"
            return '{"instruction": "' + self.history + '", "input": "", "output": "'
        if self.form == "chat":
            turn = '{"role": "user", "content": "' + text + '"}'
            self.history = self.history + ", " + turn if self.history else turn
            return '{"conversations": [' + self.history + ', {"role": "assistant", "content": "'
        if self.form == "pretrain":
            self.history = self.history + "\n" + text if self.history else text
            return '{"text": "<s>' + self.history
        self.history = ""
        return text

    def add_reply(self, reply: str) -> None:
        """Record the model's reply (stop string excluded) as the reference does."""
        if self.form == "instruct":
            self.history += reply
        elif self.form == "chat":
            self.history += ', {"role": "assistant", "content": "' + reply + '"}'
        elif self.form == "pretrain":
            self.history += reply
