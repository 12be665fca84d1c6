"""Generation: exact mode reproduces xiaothink's own loop token for token (``tf``: on a tiny checkpoint);
stream mode is deterministic, stops and refills (on the demo bundle)."""

import numpy as np
import pytest

from mof.runtime import Generator, Model, SamplingConfig
from mof.runtime.errors import MofError
from mof.runtime.generate import _holdback


@pytest.fixture(scope="module")
def tiny_model(tiny_bundle):
    """The tiny checkpoint's export, next to its TensorFlow model (tiny_tf_model)."""
    return Model.load(tiny_bundle, threads=1)


@pytest.mark.tf
@pytest.mark.parametrize("seed, temperature, top_p, penalty", [
    (0, 0.68, 0.8, 1.2), (1, 1.0, 1.0, 1.0), (2, 0.32, 0.95, 1.5)])
def test_exact_mode_reproduces_xiaothinks_generate_loop(tiny_model, tiny_tf_model, seed, temperature,
                                                        top_p, penalty):
    model = tiny_model
    from xiaothink.llm.inference import test as xt
    tokens = list(model.vocab.tokens)
    vocabdata = [{c: i for i, c in enumerate(tokens)}, np.array(tokens)]
    prompt = "AB一丁七万丈三上下不与丐丑"          # longer than the window (12): exercises the crop
    stop = tokens[5] + tokens[6]
    np.random.seed(seed)
    theirs = xt.generate_texts_untilstr_loop(
        tiny_tf_model, vocabdata, prompt, num_generate=40, temperature=temperature, top_p=top_p,
        stop_c=stop, window=model.config.window, repetition_penalty=penalty)
    gen = Generator(model, prompt, SamplingConfig(temperature=temperature, top_p=top_p,
                                                  repetition_penalty=penalty, stop=(stop,),
                                                  max_tokens=40, seed=seed), mode="exact")
    ours = "".join(gen)
    assert ours == theirs
    assert gen.output == ours and len(ours) > 0


@pytest.mark.tf
@pytest.mark.parametrize("seed, temperature, top_p, penalty", [(0, 0.68, 0.8, 1.2), (2, 0.32, 0.95, 1.5)])
def test_exact_mode_reproduces_xiaothinks_generate_loop_on_t7(tiny_t7_bundle, tiny_t7_tf_model, seed,
                                                              temperature, top_p, penalty):
    """The same, with xiaothink's MoEModel_t7 (its temperature expert divides the logits before
    the loop's own temperature); fp32 and int8 graphs load from the same T7 bundle."""
    from xiaothink.llm.inference import test as xt
    model = Model.load(tiny_t7_bundle, threads=1)
    tokens = list(model.vocab.tokens)
    vocabdata = [{c: i for i, c in enumerate(tokens)}, np.array(tokens)]
    prompt = "AB一丁七万丈三上下不与丐丑"
    np.random.seed(seed)
    theirs = xt.generate_texts_untilstr_loop(
        tiny_t7_tf_model, vocabdata, prompt, num_generate=40, temperature=temperature, top_p=top_p,
        stop_c="\x00", window=model.config.window, repetition_penalty=penalty)
    sampling = SamplingConfig(temperature=temperature, top_p=top_p, repetition_penalty=penalty,
                              max_tokens=40, seed=seed)
    ours = "".join(Generator(model, prompt, sampling, mode="exact"))
    assert ours == theirs and len(ours) == 40
    # stream mode with R = 1 re-reads the window for every token: exact mode's text
    assert "".join(Generator(model, prompt, sampling, mode="stream", refill_every=1)) == ours
    int8 = Model.load(tiny_t7_bundle, int8=True, threads=1)
    assert len("".join(Generator(int8, prompt, sampling, mode="stream"))) == 40


@pytest.mark.parametrize("mode", ["stream", "exact"])
def test_same_seed_same_text_different_seed_different_text(model, mode):
    cfg = dict(temperature=1.0, top_p=1.0, max_tokens=30)
    a = "".join(Generator(model, "春眠", SamplingConfig(seed=3, **cfg), mode=mode))
    b = "".join(Generator(model, "春眠", SamplingConfig(seed=3, **cfg), mode=mode))
    c = "".join(Generator(model, "春眠", SamplingConfig(seed=4, **cfg), mode=mode))
    assert a == b and len(a) == 30 and a != c


def test_stream_generation_follows_the_refill_rule_spelled_out(model):
    """The refill rule written out by hand: a refill of the last K = W - R + 1 ids for the prompt
    and after every R - 1 steps, a causal step otherwise."""
    R, W = 4, model.config.window
    K = W - R + 1
    sp = SamplingConfig(temperature=0, repetition_penalty=1.0, max_tokens=3 * W)
    gen = Generator(model, "七万丈", sp, mode="stream", refill_every=R)
    text = "".join(gen)
    ids = model.vocab.encode("七万丈")
    logits, state = model.refill(ids[-K:])
    manual, since, refills = [], 0, 1
    for _ in range(3 * W):
        tok = int(np.argmax(logits[0]))
        manual.append(model.vocab.tokens[tok])
        ids.append(tok)
        if since == R - 1:
            (logits, state), since, refills = model.refill(ids[-K:]), 0, refills + 1
        else:
            (logits, state), since = model.step([tok], state), since + 1
    assert text == "".join(manual)
    assert gen.stats.refills == refills
    np.testing.assert_allclose(gen.state.rnn_h, state.rnn_h, atol=1e-5)
    assert int(gen.state.position[0]) == int(state.position[0])


@pytest.mark.parametrize("R", [1, 2, 5, 12])
def test_refill_every_1_is_exact_mode_and_positions_stay_below_W(model, R):
    """Over 5W generated tokens no stepped token reaches position W, for every R; R = 1 gives
    exact mode's text token for token (same seed)."""
    from mof.runtime.decoder import StreamDecoder
    W = model.config.window
    sp = SamplingConfig(temperature=1.0, top_p=1.0, max_tokens=5 * W, seed=7)
    dec = StreamDecoder(model, R)
    positions = []
    feed = dec.feed
    dec.feed = lambda ids: (feed(ids), positions.append(dec.position))[0]
    text = "".join(Generator(model, "一丁" * W, sp, decoder=dec))
    assert len(positions) >= 5 * W and max(positions) <= W      # position = tokens read: the last at W - 1
    if R == 1:
        assert text == "".join(Generator(model, "一丁" * W, sp, mode="exact"))


def test_stop_strings_are_cut_and_never_leak_while_streaming(model):
    sp = SamplingConfig(temperature=0, repetition_penalty=1.0, max_tokens=30)
    free = "".join(Generator(model, "床前", sp))
    stop = free[8:10]
    first = free.find(stop)
    pieces = list(Generator(model, "床前", SamplingConfig(temperature=0, repetition_penalty=1.0,
                                                         max_tokens=30, stop=(stop, "never")), ))
    out = "".join(pieces)
    assert out == free[:first]
    assert all(stop not in p for p in pieces)


def test_holdback():
    assert _holdback("abc", ("cd",)) == 1
    assert _holdback("abc", ("bcd", "x")) == 2
    assert _holdback("abc", ("zz",)) == 0


def test_errors(model):
    with pytest.raises(MofError, match="empty"):
        Generator(model, "")
    with pytest.raises(MofError, match="mode"):
        Generator(model, "a", mode="fast")


@pytest.mark.tf
@pytest.mark.parametrize("prompt", ["一丁", "AB一丁七万丈三上下不与丐丑专且丕世"], ids=["shorter-than-W", "longer-than-W"])
def test_greedy_exact_mode_equals_the_tensorflow_argmax_loop(tiny_model, tiny_tf_model, prompt):
    """The reference's loop with greedy choice: model(ids[-W:])[:, -1].argmax(), repeated, in TF."""
    model = tiny_model
    W = model.config.window
    assert (len(prompt) < W) == (prompt == "一丁")
    ids = model.vocab.encode(prompt)
    for _ in range(60):
        window = np.asarray([ids[-W:]], np.int32)
        ids.append(int(tiny_tf_model(window, training=False).numpy()[0, -1].argmax()))
    want = model.vocab.decode(ids[len(prompt):])
    got = "".join(Generator(model, prompt, SamplingConfig(temperature=0, repetition_penalty=1.0,
                                                          max_tokens=60), mode="exact"))
    assert got == want and len(got) == 60
