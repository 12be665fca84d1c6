"""Vocabulary files are parsed, never executed; odd inputs fail with one clear message."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from mof.export.vocabulary import find_vocab_file, load_vocabulary, parse_vocab_text
from mof.runtime.errors import MofError
from mof.runtime.vocab import MAX_VOCAB_FILE_BYTES, Vocabulary


def test_python_list_literal_as_xiaothink_writes_it():
    assert parse_vocab_text("['▩', 'a', '\\n', '你']") == ["▩", "a", "\n", "你"]


def test_tuple_and_json_forms():
    assert parse_vocab_text("('a', 'b',)") == ["a", "b"]
    assert parse_vocab_text(json.dumps(["a", "\"", "你"])) == ["a", "\"", "你"]


@given(st.lists(st.text(max_size=3), min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_any_list_of_strings_round_trips_through_repr_and_json(tokens):
    assert parse_vocab_text(repr(tokens)) == tokens
    assert parse_vocab_text(json.dumps(tokens, ensure_ascii=False)) == tokens


@pytest.mark.parametrize("text", [
    "__import__('os').system('touch {marker}')",
    "['a', __import__('os').system('touch {marker}')]",
    "[open('{marker}', 'w')]",
    "['a'] + [__import__('os').system('touch {marker}')]",
    "[x for x in ['a']]",
])
def test_code_is_rejected_and_never_runs(tmp_path, text):
    marker = tmp_path / "pwned"
    f = tmp_path / "vocab.txt"
    f.write_text(text.format(marker=marker), encoding="utf-8")
    with pytest.raises(MofError, match="vocab"):
        load_vocabulary(f)
    assert not marker.exists()


@pytest.mark.parametrize("text, fragment", [
    ("[]", "empty"),
    ("", "empty"),
    ("[['a', 'b'], 'c']", "entry 0"),
    ("['a', 1]", "entry 1"),
    ("['a', None]", "entry 1"),
    ("{'a': 1}", "Dict"),
    ("'abc'", "Constant"),
    ("['a',", "not a list literal"),
    ('{"a": 1}', "Dict"),
    ("[" * 100000 + "]" * 100000, "v.txt"),
], ids=lambda v: v[:20] if isinstance(v, str) else None)
def test_malformed_vocabularies(text, fragment):
    with pytest.raises(MofError) as e:
        parse_vocab_text(text, "v.txt")
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_oversized_file_is_refused_before_reading(tmp_path):
    f = tmp_path / "vocab.txt"
    with open(f, "wb") as fh:
        fh.truncate(MAX_VOCAB_FILE_BYTES + 1)
    with pytest.raises(MofError, match="limit"):
        load_vocabulary(f)


def test_non_utf8_is_refused(tmp_path):
    f = tmp_path / "vocab.txt"
    f.write_bytes(b"['\xff']")
    with pytest.raises(MofError, match="UTF-8"):
        load_vocabulary(f)


def test_duplicates_warn_and_encode_as_the_reference(tmp_path):
    tokens = ["▩", "a", "b", "a", "c", "b"]
    f = tmp_path / "vocab.txt"
    f.write_text(repr(tokens), encoding="utf-8")
    vocab, warnings = load_vocabulary(f)
    assert len(warnings) == 1 and "2 duplicated" in warnings[0]
    char2idx = {u: i for i, u in enumerate(tokens)}          # the reference's own mapping
    text = "abcz▩a"
    assert vocab.encode(text) == [char2idx.get(c, char2idx["▩"]) for c in text]
    assert vocab.decode(range(len(tokens))) == "".join(tokens)   # every id decodes


def test_missing_unknown_token_uses_id_0_and_says_so(tmp_path):
    f = tmp_path / "vocab.txt"
    f.write_text(repr(["x", "y"]), encoding="utf-8")
    vocab, warnings = load_vocabulary(f)
    assert vocab.unknown_id == 0 and vocab.encode("yq") == [1, 0]
    assert any("id 0" in w for w in warnings)


def test_decode_rejects_out_of_range_ids():
    v = Vocabulary.from_tokens(["a", "b"])
    with pytest.raises(MofError, match="outside"):
        v.decode([2])


def test_find_vocab_file(tmp_path):
    with pytest.raises(MofError, match="no vocab"):
        find_vocab_file(tmp_path)
    (tmp_path / "vocab_lx3.txt").write_text("['a']")
    assert find_vocab_file(tmp_path).name == "vocab_lx3.txt"
    (tmp_path / "vocab2.txt").write_text("['a']")
    with pytest.raises(MofError, match="several"):
        find_vocab_file(tmp_path)
