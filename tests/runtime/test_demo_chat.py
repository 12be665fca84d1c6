"""The shipped demo chats: a reply to a user turn — in the training dialogues or not — is Chinese
and ends by the chat form's stop string on its own, in stream and exact mode, fp32 and int8.
Runtime only (no TensorFlow)."""

import json
from pathlib import Path

import pytest

from mof.runtime import DEFAULT_BUNDLE, Model, SamplingConfig
from mof.runtime.chat import STOPS
from mof.runtime.chat_session import ChatSession

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "demo_ckpt"
HELD_OUT = [c[-1][0] for c in json.loads((FIXTURE / "heldout_dialogues.json").read_text(encoding="utf-8"))]
TURNS = [
    "你好吗?",            # a user turn of the training dialogues
    "你好",               # held out (scripts/train_demo.py): never trained on as a user turn
    "什么是万有引力",      # held out
    "今天天气怎么样",      # in neither
]
MAX_TOKENS = 64


def cjk_share(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    cjk = [c for c in chars if "\u4e00" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef"]
    return len(cjk) / len(chars) if chars else 0.0


def test_the_turns_are_where_the_comments_say():
    assert {"你好", "什么是万有引力"} <= set(HELD_OUT) and "你好吗?" not in HELD_OUT
    assert Model.load(DEFAULT_BUNDLE).form == "chat"
    assert STOPS["chat"][-1] == '"}'


@pytest.fixture(scope="module", params=[False, True], ids=["fp32", "int8"])
def model(request):
    return Model.load(DEFAULT_BUNDLE, int8=request.param)


@pytest.mark.parametrize("mode", ["stream", "exact"])
def test_replies_are_chinese_and_end_on_their_own(model, mode):
    bad = []
    for turn in TURNS:
        session = ChatSession(model, SamplingConfig(max_tokens=MAX_TOKENS, seed=0), mode)  # the bundle's form
        gen = session.turn(turn)
        reply = "".join(gen)
        print(model.precision, mode, turn, "->", reply, f"[{gen.stats.stopped_by}]")
        if not (reply.strip() and gen.stats.stopped_by == "stop" and cjk_share(reply) >= 0.5):
            bad.append((turn, reply, gen.stats.stopped_by))
    assert not bad, bad


def test_a_second_turn_also_ends_on_its_own(model):
    session = ChatSession(model, SamplingConfig(max_tokens=MAX_TOKENS, seed=1))
    for turn in ("你好", "你叫什么名字"):
        gen = session.turn(turn)
        reply = "".join(gen)
        session.finish(gen)
        assert gen.stats.stopped_by == "stop" and reply.strip() and cjk_share(reply) >= 0.5, (turn, reply)
    assert session.conversation.history.count('{"role": "assistant", "content": "') == 2
