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
