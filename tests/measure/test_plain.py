"""Plain stream decoding (mof.measure.plain), the baseline the refill rule is measured against:
causal from the first token, one re-read at the end of the position table."""

import numpy as np

from mof.measure.plain import PlainDecoder
from mof.runtime import Generator, Model, SamplingConfig
from mof.runtime.decoder import StreamDecoder


def test_plain_stream_refills_only_at_the_end_of_the_position_table(demo_bundle):
    model = Model.load(demo_bundle, threads=1)
    P = model.config.max_positions
    dec = PlainDecoder(model)
    gen = Generator(model, "一" * (P - 2), SamplingConfig(temperature=1.0, max_tokens=10, seed=0), decoder=dec)
    out = "".join(gen)
    assert len(out) == 10 and gen.stats.refills == 1
    assert int(gen.state.position[0]) <= P


def test_plain_reads_what_the_step_graph_reads_and_drifts_from_the_refill_rule(demo_bundle):
    model = Model.load(demo_bundle, threads=1)
    W = model.config.window
    ids = model.vocab.encode(("床前明月光，疑是地上霜。举头望明月，低头思故乡。" * 8)[: W + 8])
    plain, logits = PlainDecoder(model), None
    for i in ids:
        logits = plain.feed([i])
    direct, _ = model.step([ids], model.initial_state(1))             # one causal pass, no refill
    assert float(np.abs(logits - direct[0]).max()) < 1e-4
    assert plain.refills == 0 and plain.position == len(ids)
    stream = StreamDecoder(model, 4)
    for i in ids:
        stream_logits = stream.feed([i])
    assert stream.refills > 0 and not np.allclose(logits, stream_logits)
