"""Parse a xiaothink vocabulary file without executing it.

xiaothink writes ``vocab_lx3.txt`` as a Python list literal and reads it back
with ``eval()``. We accept exactly two forms — a flat Python list/tuple literal
of string constants, or a JSON list of strings — by parsing, never evaluating:
the Python form goes through ``ast.parse`` and every node is checked to be a
string constant, so ``__import__('os').system(...)`` is a syntax-level refusal.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from mof.runtime.contract import UNKNOWN_TOKEN
from mof.runtime.errors import MofError
from mof.runtime.vocab import Vocabulary, check_token_list, read_limited


def parse_vocab_text(text: str, source: str = "vocabulary") -> list[str]:
    stripped = text.strip()
    if not stripped:
        raise MofError(f"{source}: vocabulary file is empty")
    if stripped[0] == "[":
        try:
            return check_token_list(json.loads(stripped), source)
        except (ValueError, RecursionError):
            pass  # not JSON: try the Python literal form (single quotes, trailing commas)
    try:
        tree = ast.parse(stripped, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        detail = getattr(e, "msg", None) or type(e).__name__
        raise MofError(f"{source}: not a list literal of strings ({detail})") from None
    node = tree.body
    if not isinstance(node, (ast.List, ast.Tuple)):
        raise MofError(f"{source}: expected a list literal of strings, found a "
                       f"{type(node).__name__} expression")
    tokens = []
    for i, elt in enumerate(node.elts):
        if not (isinstance(elt, ast.Constant) and isinstance(elt.value, str)):
            what = type(elt.value).__name__ if isinstance(elt, ast.Constant) else type(elt).__name__
            raise MofError(f"{source}: vocabulary entry {i} is a {what}, not a string constant "
                           "(the file is parsed, never executed)")
        tokens.append(elt.value)
    return check_token_list(tokens, source)


def load_vocabulary(path: str | Path) -> tuple[Vocabulary, list[str]]:
    """Read a vocabulary file. Returns the vocabulary and human-readable warnings."""
    path = Path(path)
    tokens = parse_vocab_text(read_limited(path), str(path))
    vocab = Vocabulary.from_tokens(tokens)
    warnings = []
    dups = vocab.duplicates()
    if dups:
        shown = ", ".join(f"{t!r} at ids {where}" for t, where in list(dups.items())[:5])
        more = f" and {len(dups) - 5} more" if len(dups) > 5 else ""
        warnings.append(f"{path.name}: {len(dups)} duplicated entries ({shown}{more}); encoding "
                        "uses the last occurrence, as the reference does; every id still decodes")
    if not vocab.has_unknown_token:
        warnings.append(f"{path.name}: no {UNKNOWN_TOKEN!r} entry (the reference's fallback for "
                        f"unknown characters); unknown characters will map to id {vocab.unknown_id} "
                        f"({vocab.tokens[vocab.unknown_id]!r})")
    return vocab, warnings


def find_vocab_file(folder: Path) -> Path:
    """The single ``vocab*.txt`` in ``folder``; none or several is an error."""
    found = sorted(p for p in folder.glob("vocab*.txt") if p.is_file())
    if not found:
        raise MofError(f"no vocab*.txt next to the checkpoint in {folder}; pass --vocab FILE")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise MofError(f"several vocabularies in {folder} ({names}); pass --vocab FILE")
    return found[0]
