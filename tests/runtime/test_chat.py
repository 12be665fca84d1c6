"""Chat templates equal xiaothink's QianyanModel.chat prompts byte for byte, turn after turn."""

import pytest

from mof.runtime.chat import Conversation
from mof.runtime.errors import MofError

TURNS = ["你好", '写一首诗，\n关于"月亮"', "[不是命令]", "再来一首"]
REPLIES = ["嗨，我在", "床前明月光", "好的\\n", "疑是地上霜"]


def test_chat_form_by_hand():
    c = Conversation("chat")
    assert c.prompt("你好") == '{"conversations": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "'
    c.add_reply("嗨")
    assert c.prompt("a\nb") == ('{"conversations": [{"role": "user", "content": "你好"}, {"role": "assistant", '
                                '"content": "嗨"}, {"role": "user", "content": "a\\nb"}, {"role": "assistant", "content": "')


def test_unknown_form():
    with pytest.raises(MofError, match="form"):
        Conversation("poem")


@pytest.mark.tf
@pytest.mark.parametrize("form, ref_form", [("chat", 1), ("instruct", 0), ("pretrain", "pretrain"), ("raw", None)])
def test_prompts_and_stops_equal_xiaothinks(monkeypatch, form, ref_form):
    from mof.export._tf import import_tf
    import_tf()
    from xiaothink.llm.inference import test as xt
    from xiaothink.llm.inference import test_formal

    seen = []

    def fake_loop(model, vocabdata, start_string, num_generate, every, temperature, stop_c,
                  repetition_penalty, pass_start_char, pass_char, top_p):
        seen.append((start_string, list(stop_c)))
        return REPLIES[len(seen) - 1]

    monkeypatch.setattr(xt, "generate_texts_untilstr_loop", fake_loop)

    class Stub:
        def reset_states(self):
            pass

    ref = object.__new__(test_formal.QianyanModel)
    ref.model, ref.d, ref.his, ref.v_path, ref.use_patch, ref.imgzip_model_path = Stub(), None, "", None, 0, None
    ours = Conversation(form)
    for i, text in enumerate(TURNS):
        ref.chat(text, form=ref_form, ontime=False)
        prompt, stops = seen[-1]
        assert ours.prompt(text) == prompt, f"turn {i}"
        assert list(ours.stops) == stops
        ours.add_reply(REPLIES[i])
        assert ours.history == ref.his
    ours.clear()
    ref.clean_his()
    assert ours.history == ref.his == ""


@pytest.mark.tf
def test_a_t7_chat_is_xiaothinks_turn_for_turn(tiny_t7_bundle, tiny_t7_tf_model, monkeypatch):
    """xiaothink's QianyanModel.chat has no T7 branch: the same chat template drives MoEModel_t7.
    Its real loop on the T7 model against mof's ChatSession (exact mode) on the T7 bundle: the same
    replies and the same history, turn after turn (each turn seeded alike). The loop re-reads the
    bundle's W = 12 characters instead of its default 128: the tiny model's position table has 64."""
    import dataclasses
    import functools

    import numpy as np
    from xiaothink.llm.inference import test as xt
    from xiaothink.llm.inference import test_formal

    from mof.runtime import Model, SamplingConfig
    from mof.runtime.chat_session import ChatSession

    model = Model.load(tiny_t7_bundle, threads=1)
    monkeypatch.setattr(xt, "generate_texts_untilstr_loop",
                        functools.partial(xt.generate_texts_untilstr_loop, window=model.config.window))
    tokens = list(model.vocab.tokens)
    ref = object.__new__(test_formal.QianyanModel)
    ref.model, ref.his, ref.v_path, ref.use_patch, ref.imgzip_model_path = tiny_t7_tf_model, "", None, 0, None
    ref.d = [{c: i for i, c in enumerate(tokens)}, np.array(tokens)]
    ours = ChatSession(model, SamplingConfig(temperature=0.68, top_p=0.8, repetition_penalty=1.2,
                                             max_tokens=24, seed=4), mode="exact", form="chat")
    for text, seed in (("ABC 一丁", 4), ("七万\n丈", 9)):
        np.random.seed(seed)
        ours.sampling = dataclasses.replace(ours.sampling, seed=seed)
        theirs = ref.chat(text, temp=0.68, max_len=24, form=1, ontime=False)
        gen = ours.turn(text)
        reply = "".join(gen)
        ours.finish(gen)
        assert reply == theirs and len(reply) == 24
        assert ours.conversation.history == ref.his
