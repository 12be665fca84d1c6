"""Untrusted bundles, bad input, long sessions and threads (the bad-input matrix in docs/hardening.md).

Runs on the demo bundle shipped in the package: no TensorFlow needed."""

import ast
import json
import os
import shutil
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mof.runtime import DEFAULT_BUNDLE, Generator, Model, SamplingConfig, State
from mof.runtime.bundle import BundleError, file_record, read_manifest
from mof.runtime.contract import FORMAT, READABLE_VERSIONS
from mof.runtime.errors import MofError
from mof.runtime.chat_session import ChatSession

GRAPH = "step.onnx"
WEIGHTS = "weights.fp32.bin"


@pytest.fixture
def bundle(tmp_path):
    copy = tmp_path / "b.mof"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    return copy


def _rewrite_manifest(bundle, change):
    m = json.loads((bundle / "manifest.json").read_text())
    change(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def _rehash(bundle, name):
    _rewrite_manifest(bundle, lambda m: m["files"].__setitem__(
        name, file_record(bundle / name)))


@pytest.mark.parametrize("damage, message", [
    (lambda b: (b / GRAPH).write_bytes((b / GRAPH).read_bytes()[:-1] + b"\x00"), "sha256"),
    (lambda b: (b / GRAPH).write_bytes((b / GRAPH).read_bytes()[:1000]), "bytes, manifest says"),
    (lambda b: (b / "manifest.json").unlink(), "no manifest.json"),
    (lambda b: _rewrite_manifest(b, lambda m: m.__setitem__("format_version", 3)), "format_version 3"),
    (lambda b: (b / WEIGHTS).write_bytes((b / WEIGHTS).read_bytes()[:-1] + b"\x01"), "sha256"),
    (lambda b: _rewrite_manifest(b, lambda m: m["weights"].__setitem__("fp32", "../w.bin")), "'weights' must name"),
    (lambda b: _rewrite_manifest(b, lambda m: m["files"].__setitem__("../../etc/passwd", m["files"][GRAPH])), "unsafe"),
    (lambda b: _rewrite_manifest(b, lambda m: m["graphs"]["step"].__setitem__("fp32", "/etc/passwd")), "not in the manifest"),
    (lambda b: ((b / GRAPH).rename(b / "real.onnx"), (b / GRAPH).symlink_to(b / "real.onnx")), "symbolic link"),
    (lambda b: os.link(b / GRAPH, b.parent / "elsewhere.onnx"), "hard-linked"),
    (lambda b: (b / "manifest.json").write_text("{" * 10**6), "not valid JSON"),
], ids=["tampered", "truncated", "no-manifest", "version", "weights-tampered", "weights-outside", "outside", "graph-outside", "symlink",
        "hardlink", "manifest-bomb"])
def test_bad_bundles_are_refused_with_one_line(bundle, damage, message):
    damage(bundle)
    with pytest.raises(BundleError) as e:
        Model.load(bundle)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_graph_with_external_data_is_refused(bundle, tmp_path):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    w = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    w.ClearField("float_data")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../secret.bin")
    graph = helper.make_graph([helper.make_node("Add", ["input_ids", "w"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [4])], [w])
    (bundle / "chunk.onnx").write_bytes(helper.make_model(graph).SerializeToString())
    _rehash(bundle, "chunk.onnx")
    with pytest.raises(BundleError, match=r"chunk.onnx refers to external data in '../secret.bin'; "
                                          r"only weights.fp32.bin may hold its weights"):
        Model.load(bundle, graphs=("chunk",))


@pytest.mark.parametrize("location", ["weights.int8.bin", "vocab.json", "manifest.json", "unlisted.bin"])
def test_a_graph_may_read_only_its_own_precisions_weights_file(bundle, location):
    """Files inside the bundle too: an fp32 graph reading the int8 weights, the vocabulary or a
    file the manifest does not list is refused before onnxruntime opens anything."""
    onnx = pytest.importorskip("onnx")
    (bundle / "unlisted.bin").write_bytes(bytes(64))
    m = onnx.load(str(bundle / "chunk.onnx"), load_external_data=False)
    t = next(t for t in m.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    next(e for e in t.external_data if e.key == "location").value = location
    (bundle / "chunk.onnx").write_bytes(m.SerializeToString())
    _rehash(bundle, "chunk.onnx")
    with pytest.raises(BundleError, match=f"refers to external data in '{location}'"):
        Model.load(bundle, graphs=("chunk",))


@pytest.mark.parametrize("victim", [WEIGHTS, "decode.onnx"])
def test_a_file_changed_while_onnxruntime_opens_it_is_refused(bundle, monkeypatch, victim):
    """Format 2: onnxruntime opens the graphs and the weights file by path, after the hash check.
    A write in between (here: inside the session constructor) changes the file's identity."""
    import mof.runtime.model as model_module
    real = model_module.ort.InferenceSession

    def tamper_then_open(*args, **kwargs):
        path = bundle / victim
        path.write_bytes(path.read_bytes())             # same bytes, but written: a new ctime
        return real(*args, **kwargs)
    monkeypatch.setattr(model_module.ort, "InferenceSession", tamper_then_open)
    with pytest.raises(BundleError, match=f"{victim} changed while the bundle was being loaded"):
        Model.load(bundle)


def _pb_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _pb(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _pb_varint(field << 3 | 2) + _pb_varint(len(payload)) + payload


def _external_tensor(location) -> bytes:
    """TensorProto with data_location EXTERNAL (14 = 1) and, unless None, external_data {location}."""
    entry = b"" if location is None else _pb(13, _pb(1, b"location") + _pb(2, location.encode("utf-8")))
    return _pb(1, b"w") + entry + _pb_varint(14 << 3) + _pb_varint(1)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000))
def test_external_reference_scan_of_any_bytes_is_a_proto_error_or_what_they_hold(data):
    """Arbitrary bytes: a ProtoError, or locations each spelt out in the bytes (never invented)."""
    from mof.runtime.onnx_refs import ProtoError, external_locations
    try:
        found = external_locations(data)
    except ProtoError:
        return
    assert isinstance(found, list)
    for location in found:
        assert location is None or location.encode("utf-8") in data or \
            (location.startswith("b") and ast.literal_eval(location) in data), location   # repr(): not UTF-8


names = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))


@settings(max_examples=150, deadline=None)
@given(top=st.lists(names, max_size=4), nested=st.lists(names, max_size=4), depth=st.integers(1, 5))
def test_external_reference_scan_finds_every_external_tensor_in_a_model(top, nested, depth):
    """A ModelProto whose graph holds external initializers and a node with a subgraph (``depth``
    deep) holding more: every location, None for one without, in the walk's order."""
    from mof.runtime.onnx_refs import external_locations
    sub = b"".join(_pb(5, _external_tensor(n)) for n in nested)
    for _ in range(depth):                                   # NodeProto.attribute (5) -> AttributeProto.g (6)
        sub = _pb(1, _pb(5, _pb(6, sub)))
    graph = b"".join(_pb(5, _external_tensor(n)) for n in top) + sub
    assert external_locations(_pb(7, graph)) == top + nested


def test_graph_with_an_unknown_op_domain_is_refused(bundle):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Exfiltrate", ["input_ids"], ["logits"], domain="evil.ops")],
                              "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT32, [1])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                     helper.make_opsetid("evil.ops", 1)])
    (bundle / "chunk.onnx").write_bytes(model.SerializeToString())
    _rehash(bundle, "chunk.onnx")
    with pytest.raises(BundleError, match="cannot load chunk.onnx"):
        Model.load(bundle, graphs=("chunk",))


def _manifest_verdict(folder, data: bytes):
    """read_manifest on ``data``: the Manifest, or its error, which must be one line naming the file."""
    (folder / "manifest.json").write_bytes(data)
    try:
        return read_manifest(folder)
    except BundleError as e:
        assert "\n" not in str(e) and str(folder) in str(e), str(e)
        return e


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000))
def test_manifest_of_any_bytes_is_a_one_line_error_or_a_checked_manifest(tmp_path, data):
    verdict = _manifest_verdict(tmp_path, data)
    if not isinstance(verdict, BundleError):
        assert verdict["format"] == FORMAT and verdict["format_version"] in READABLE_VERSIONS


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from([FORMAT, "mof-bundle2", "", None]),
       version=st.one_of(st.sampled_from(READABLE_VERSIONS), st.integers(-2, 9), st.booleans(), st.none(),
                         st.text(max_size=3), st.floats(allow_nan=False)))
def test_a_manifest_is_read_exactly_when_its_format_and_version_are_known(tmp_path, fmt, version):
    """The shipped manifest with its format and format_version replaced: read (the rest unchanged)
    exactly when both are ones this mof reads, else a one-line BundleError naming the file."""
    shipped = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text(encoding="utf-8"))
    changed = {**shipped, "format": fmt, "format_version": version}
    verdict = _manifest_verdict(tmp_path, json.dumps(changed).encode("utf-8"))
    known = fmt == FORMAT and version in READABLE_VERSIONS and not isinstance(version, bool)
    assert isinstance(verdict, BundleError) != known, (fmt, version, verdict)
    if known:
        assert dict(verdict) == changed


@pytest.fixture(scope="module")
def model():
    return Model.load(DEFAULT_BUNDLE, int8=True)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=4000))
def test_state_from_arbitrary_bytes_is_a_clean_error(data):
    from mof.runtime.manifest import model_config
    config = model_config(read_manifest(DEFAULT_BUNDLE))
    with pytest.raises(MofError):
        State.from_bytes(data, config)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_tokenizer_round_trip(model, data):
    unique = [t for t, i in model.vocab.ids.items() if len(t) == 1]
    text = "".join(data.draw(st.lists(st.sampled_from(unique), max_size=50)))
    assert model.vocab.decode(model.vocab.encode(text)) == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(temperature=st.floats(0, 5), top_p=st.floats(0.01, 1), top_k=st.integers(0, 100),
       min_p=st.floats(0, 0.99), penalty=st.floats(0.1, 5), scale=st.floats(0, 1e4), seed=st.integers(0, 99))
def test_any_valid_config_yields_an_allowed_token(model, temperature, top_p, top_k, min_p, penalty, scale, seed):
    from mof.runtime.sampling import Sampler
    ban = tuple(model.vocab.tokens[1:50])
    s = Sampler(SamplingConfig(temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                               repetition_penalty=penalty, ban=ban, seed=seed), model.vocab)
    logits = (np.random.default_rng(seed).normal(size=model.config.vocab_size) * scale).astype(np.float32)
    tok = s.sample(logits, recent=[1, 2, 3])
    assert 0 <= tok < model.config.vocab_size and model.vocab.tokens[tok] not in ban
    if temperature > 0:
        assert np.isfinite(s.probabilities(logits, [1, 2, 3])).all()


def test_prompt_of_unknown_characters_and_longer_than_the_position_table(model):
    sp = SamplingConfig(max_tokens=5, seed=0)
    out = "".join(Generator(model, "\U0001F600☃" * 3, sp, mode="stream"))    # every char maps to ▩
    assert len(out) == 5
    P = model.config.max_positions
    gen = Generator(model, "春" * (P + 50), sp, mode="stream")
    assert len("".join(gen)) == 5 and gen.stats.refills >= 1


def test_stream_soak_refills_and_stays_bounded(model):
    """A shorter version of benchmarks/soak.py: finite logits, bounded state, many refills, no
    position at W or beyond (the refill rule)."""
    gen = Generator(model, "床前明月光，", SamplingConfig(max_tokens=1500, seed=1, temperature=0.8))
    worst = 0.0
    for _ in gen:
        s = gen.state
        worst = max(worst, float(np.abs(s.rnn_h).max()), float(np.abs(s.emb_h).max()))
        assert np.isfinite(gen.decoder.logits).all()
        assert int(s.position[0]) <= model.config.window
    assert gen.stats.refills >= 1500 // gen.decoder.refill_every and worst <= 1.0 + 1e-6   # GRU states in [-1, 1]


def test_one_model_shared_by_eight_threads_equals_sequential_runs(model):
    prompts = ["床前明月光，", "春眠不觉晓，", "白日依山尽，", "红豆生南国，"] * 2

    def run(i):
        return "".join(Generator(model, prompts[i], SamplingConfig(max_tokens=40, seed=i),
                                 mode="stream" if i % 2 else "exact"))

    sequential = [run(i) for i in range(8)]
    parallel = [None] * 8

    def worker(i):
        parallel[i] = run(i)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert parallel == sequential


def test_interrupted_state_save_keeps_the_old_file(model, tmp_path, monkeypatch):
    session = ChatSession(model, SamplingConfig(max_tokens=5, seed=0), "stream", form="raw")
    gen = session.turn("床前")
    "".join(gen)
    session.finish(gen)
    path = tmp_path / "chat.npz"
    session.save(path)
    before = path.read_bytes()

    def broken(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError):
        session.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["chat.npz"]
