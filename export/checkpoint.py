"""Find a TF checkpoint, list its variables, and read the T6/T7 sizes off their shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from mof.runtime.config import ModelConfig
from mof.runtime.errors import MofError

from .families import MODEL_TYPES, REFERENCE_WINDOW

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_DATA_RE = re.compile(r"\.data-\d{5}-of-\d{5}$")

# Variables whose shapes fix the sizes (paths as tf.train.list_variables prints them, suffix stripped).
EMBEDDING = "layer_with_weights-0/token_emb/embeddings"                        # [V, E]
ROUTER_GRU = "layer_with_weights-1/router_gru/cell/recurrent_kernel"           # [R, 3R]
RNN_GRU = "layer_with_weights-1/experts/0/context_encoders/{i}/cell/recurrent_kernel"  # [U, 3U]
POSITIONS = "layer_with_weights-1/experts/{j}/position_embedding/position_embedding/embeddings"  # [P, E]
FFN_IN = "layer_with_weights-1/experts/{j}/transformer_blocks/{i}/ffn/layer_with_weights-0/kernel"  # [E, F]
HEAD = "layer_with_weights-1/next_token_predictor/kernel"                      # [U, V]
EMBED_GRU = "layer_with_weights-0/lstm1/cell/recurrent_kernel"                 # [E, 3E]; absent: bare embedding
TEMP_GRU = "layer_with_weights-1/temp_expert_gru/cell/recurrent_kernel"        # [R, 3R]; T7 only
ROUTER_DENSE = "layer_with_weights-1/router_dense/kernel"                      # [R, experts]
_RNN_RE = re.compile(r"^layer_with_weights-1/experts/0/context_encoders/(\d+)/")
_BLOCK_RE = r"^layer_with_weights-1/experts/{j}/transformer_blocks/(\d+)/"   # .format(j=expert)


def locate_checkpoint(path: str | Path) -> Path:
    """Return the checkpoint prefix for a prefix, a folder with a ``checkpoint`` file, or an .index/.data file."""
    p = Path(path)
    if p.is_dir():
        state = p / "checkpoint"
        if state.is_file():
            prefix = _latest_from_state_file(state)
            if not prefix.is_absolute():
                prefix = p / prefix
        else:
            indexes = sorted(p.glob("*.index"))
            if len(indexes) != 1:
                found = "no" if not indexes else f"{len(indexes)}"
                raise MofError(f"{p} has no 'checkpoint' file and {found} *.index files; "
                               "pass the checkpoint prefix (e.g. DIR/ckpt-10)")
            prefix = indexes[0].with_suffix("")
    elif p.name.endswith(".index"):
        prefix = p.with_name(p.name[: -len(".index")])
    elif _DATA_RE.search(p.name):
        prefix = p.with_name(_DATA_RE.sub("", p.name))
    else:
        prefix = p
    index = prefix.with_name(prefix.name + ".index")
    if not index.is_file():
        if not p.exists() and not index.exists():
            raise MofError(f"checkpoint not found: {path} (no {index.name})")
        raise MofError(f"checkpoint index missing: {index}")
    if not list(prefix.parent.glob(prefix.name + ".data-*")):
        raise MofError(f"checkpoint data missing: no {prefix.name}.data-* next to {index}")
    return prefix


def _latest_from_state_file(state: Path) -> Path:
    """Parse the text-format CheckpointState (``model_checkpoint_path: "..."``) without TF."""
    try:
        text = state.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise MofError(f"cannot read {state}: {e.strerror or e}") from None
    m = re.search(r'^\s*model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', text, re.M)
    if not m:
        raise MofError(f"{state} names no model_checkpoint_path")
    return Path(m.group(1).encode("utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8"))


def list_variables(prefix: Path) -> dict[str, tuple[int, ...]]:
    """Variable name (suffix stripped) -> shape, read from the checkpoint index."""
    from ._tf import import_tf
    tf = import_tf()
    try:
        raw = tf.train.list_variables(str(prefix))
    except (tf.errors.OpError, ValueError) as e:
        msg = getattr(e, "message", None) or str(e)
        raise MofError(f"cannot read checkpoint {prefix}: {msg.splitlines()[0]}") from None
    out = {}
    for name, shape in raw:
        if name.endswith(_SUFFIX):
            out[name[: -len(_SUFFIX)]] = tuple(int(d) for d in shape)
    return out


def check_data_complete(prefix: Path) -> None:
    """The .data files hold at least the bytes of every numeric tensor the index lists: a truncated
    or partly copied checkpoint fails here, in seconds, instead of when the weights are restored
    after the network was built."""
    from ._tf import import_tf
    tf = import_tf()
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    except (tf.errors.OpError, ValueError) as e:
        msg = getattr(e, "message", None) or str(e)
        raise MofError(f"cannot read checkpoint {prefix}: {msg.splitlines()[0]}") from None
    need = sum(int(np.prod(shapes[n], dtype=np.int64)) * dt.size
               for n, dt in dtypes.items() if dt != tf.string)
    have = sum(p.stat().st_size for p in prefix.parent.glob(prefix.name + ".data-*"))
    if have < need:
        raise MofError(f"checkpoint {prefix} is truncated or corrupt: its data files hold {have:,} bytes, "
                       f"its index lists {need:,} bytes of tensors")


@dataclass(frozen=True)
class ShapeFacts:
    """What the checkpoint's variable shapes determine."""
    vocab_size: int
    embed_dim: int
    rnn_units: int
    router_units: int
    rnn_layers: int
    trans_layers: int
    ffn_dim: Optional[int]     # None when trans_layers == 0 (no FFN to measure)
    max_positions: int
    family: str = "t6"         # "t7" when the temperature expert's GRU is there
    trans_layers_2: int = 0    # T7: experts/2's blocks
    ffn_dim_2: Optional[int] = None   # T7: experts/2's FFN width (None when it has no blocks)
    embed_gru: bool = True     # the embedding block's GRU is there


def _shape(variables: dict, name: str, rank: int) -> tuple[int, ...]:
    if name not in variables:
        raise MofError(f"not a Xiaothink T6/T7 checkpoint: variable {name} is missing")
    s = variables[name]
    if len(s) != rank:
        raise MofError(f"variable {name} has shape {list(s)}, expected rank {rank}")
    return s


def _count(variables: dict, pattern: re.Pattern) -> int:
    idx = {int(m.group(1)) for n in variables if (m := pattern.match(n))}
    if idx and idx != set(range(len(idx))):
        raise MofError(f"checkpoint layers are not numbered 0..N-1: {sorted(idx)}")
    return len(idx)


def read_shape_facts(variables: dict[str, tuple[int, ...]]) -> ShapeFacts:
    V, E = _shape(variables, EMBEDDING, 2)
    R, R3 = _shape(variables, ROUTER_GRU, 2)
    n = _count(variables, _RNN_RE)
    if n == 0:
        raise MofError(f"not a Xiaothink T6/T7 checkpoint: no {RNN_GRU.format(i=0)}")
    U, U3 = _shape(variables, RNN_GRU.format(i=0), 2)
    family = "t7" if TEMP_GRU in variables else "t6"
    transformers = []                                  # (blocks, FFN width or None, P) per transformer expert
    for j in ((1, 2) if family == "t7" else (1,)):
        P, E2 = _shape(variables, POSITIONS.format(j=j), 2)
        if E2 != E:
            raise MofError(f"variable {POSITIONS.format(j=j)} has shape {[P, E2]}, expected [P, {E}] "
                           "(embedding width)")
        L = _count(variables, re.compile(_BLOCK_RE.format(j=j)))
        transformers.append((L, _shape(variables, FFN_IN.format(j=j, i=0), 2)[1] if L else None, P))
    if len({P for _, _, P in transformers}) != 1:
        raise MofError("the transformer experts' position tables differ in size: "
                       + ", ".join(str(P) for _, _, P in transformers))
    if R3 != 3 * R:
        raise MofError(f"variable {ROUTER_GRU} has shape {[R, R3]}, expected [R, 3R]")
    if U3 != 3 * U:
        raise MofError(f"variable {RNN_GRU.format(i=0)} has shape {[U, U3]}, expected [U, 3U]")
    router = _shape(variables, ROUTER_DENSE, 2)
    if router != (R, 1 + len(transformers)):
        raise MofError(f"variable {ROUTER_DENSE} has shape {list(router)}, expected "
                       f"{[R, 1 + len(transformers)]} (one weight per expert)")
    if family == "t7" and _shape(variables, TEMP_GRU, 2) != (R, 3 * R):
        raise MofError(f"variable {TEMP_GRU} has shape {list(variables[TEMP_GRU])}, expected {[R, 3 * R]}")
    head = _shape(variables, HEAD, 2)
    if head != (U, V):
        raise MofError(f"variable {HEAD} has shape {list(head)}, expected {[U, V]}")
    (L, F, P), second = transformers[0], transformers[1:]
    L2, F2 = (second[0][0], second[0][1]) if second else (0, None)
    return ShapeFacts(V, E, U, R, n, L, F, P, family=family, trans_layers_2=L2, ffn_dim_2=F2,
                      embed_gru=EMBED_GRU in variables)


def resolve_config(facts: ShapeFacts, model_type: Optional[str] = None, *,
                   num_heads: Optional[int] = None, trans_window: Optional[int] = None,
                   window: Optional[int] = None) -> ModelConfig:
    """Combine shape facts with the model type's table entry and the user's overrides."""
    ffn_dim, ffn_dim_2 = facts.ffn_dim, facts.ffn_dim_2
    if model_type is not None:
        if model_type not in MODEL_TYPES:
            raise MofError(f"unknown --model-type {model_type!r}; model types: {', '.join(MODEL_TYPES)}")
        t = MODEL_TYPES[model_type].config(facts.vocab_size)
        if facts.family != t.family:
            raise MofError(f"checkpoint does not match --model-type {model_type}: it is a "
                           f"{facts.family.upper()} network"
                           + (f" (it has {TEMP_GRU})" if facts.family == "t7" else f" (no {TEMP_GRU})")
                           + f", {model_type} is {t.family.upper()}")
        _expect(model_type, EMBEDDING, (facts.vocab_size, facts.embed_dim), (None, t.embed_dim))
        _expect(model_type, RNN_GRU.format(i=0), (facts.rnn_units, 3 * facts.rnn_units),
                (t.rnn_units, 3 * t.rnn_units))
        _expect(model_type, ROUTER_GRU, (facts.router_units, 3 * facts.router_units),
                (t.router_units, 3 * t.router_units))
        _expect(model_type, POSITIONS.format(j=1), (facts.max_positions, facts.embed_dim),
                (t.max_positions, t.embed_dim))
        if facts.rnn_layers != t.rnn_layers:
            raise MofError(f"checkpoint does not match --model-type {model_type}: it has "
                           f"{facts.rnn_layers} RNN-expert GRUs ({RNN_GRU.format(i='N')}), "
                           f"{model_type} has {t.rnn_layers}")
        if facts.embed_gru != t.embed_gru:
            has = "has" if facts.embed_gru else "has no"
            raise MofError(f"checkpoint does not match --model-type {model_type}: it {has} an "
                           f"embedding GRU ({EMBED_GRU}), {model_type} {'has' if t.embed_gru else 'has no'} one")
        for j, (got_l, got_f), (want_l, want_f) in zip((1, 2), ((facts.trans_layers, facts.ffn_dim),
                                                             (facts.trans_layers_2, facts.ffn_dim_2)),
                                                       t.transformers):
            if got_l != want_l:
                raise MofError(f"checkpoint does not match --model-type {model_type}: it has "
                               f"{got_l} transformer blocks (layer_with_weights-1/experts/{j}/"
                               f"transformer_blocks/N), {model_type} has {want_l}")
            if got_f is not None:
                _expect(model_type, FFN_IN.format(j=j, i=0), (facts.embed_dim, got_f), (t.embed_dim, want_f))
        num_heads = num_heads if num_heads is not None else t.num_heads
        trans_window = trans_window if trans_window is not None else t.trans_window
        ffn_dim = t.ffn_dim if ffn_dim is None else ffn_dim
        ffn_dim_2 = t.ffn_dim_2 if ffn_dim_2 is None else ffn_dim_2
    else:
        missing = [flag for flag, v in (("--heads", num_heads), ("--trans-window", trans_window))
                   if v is None]
        if missing:
            raise MofError(f"the checkpoint's shapes do not determine {' and '.join(missing)}: "
                           f"pass {' and '.join(missing)} or --model-type NAME "
                           f"({', '.join(MODEL_TYPES)})")
        # a transformer expert with no blocks has no FFN to measure: any valid width will do
        ffn_dim = ffn_dim if ffn_dim is not None else facts.embed_dim
        ffn_dim_2 = ffn_dim_2 if ffn_dim_2 is not None else (facts.embed_dim if facts.family == "t7" else 0)
    return ModelConfig(
        vocab_size=facts.vocab_size, embed_dim=facts.embed_dim, rnn_units=facts.rnn_units,
        router_units=facts.router_units, rnn_layers=facts.rnn_layers,
        trans_layers=facts.trans_layers, num_heads=num_heads, ffn_dim=ffn_dim,
        max_positions=facts.max_positions, trans_window=trans_window,
        window=window if window is not None else REFERENCE_WINDOW, family=facts.family,
        trans_layers_2=facts.trans_layers_2, ffn_dim_2=ffn_dim_2, embed_gru=facts.embed_gru)


def _expect(model_type: str, var: str, actual: tuple, expected: tuple) -> None:
    """Compare a variable's shape with the model type's; None in ``expected`` matches anything."""
    if any(e is not None and a != e for a, e in zip(actual, expected)):
        want = ", ".join("*" if e is None else str(e) for e in expected)
        raise MofError(f"checkpoint does not match --model-type {model_type}: {var} has shape "
                       f"{list(actual)}, {model_type} expects [{want}]")
