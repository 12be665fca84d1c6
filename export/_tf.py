"""Import TensorFlow the one way these checkpoints can be read: TF 2.x with tf_keras.

Keras 3 cannot restore the TF-format checkpoints xiaothink writes, so
TF_USE_LEGACY_KERAS=1 must be set before TensorFlow is first imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

from mof.runtime.errors import MofError

_INSTALL_HINT = "install the export extra: pip install 'mof[export]'"


@contextlib.contextmanager
def _quiet_fd2(active: bool):
    """Silence C++ start-up chatter (oneDNN, CUDA probing) that TF prints before its log level applies."""
    if not active:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tf(verbose: bool = False):
    """Return the ``tensorflow`` module, configured for tf_keras. Raises MofError if unusable."""
    if "tensorflow" not in sys.modules:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        if not verbose:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _quiet_fd2(not verbose and "tensorflow" not in sys.modules):
            import tensorflow as tf
            import tf_keras  # noqa: F401  (must be importable for TF_USE_LEGACY_KERAS)
    except ImportError as e:
        raise MofError(f"TensorFlow/tf_keras not available ({e}); {_INSTALL_HINT}") from None
    if not tf.keras.layers.Layer.__module__.startswith("tf_keras"):
        raise MofError(
            "tf.keras is Keras 3, which cannot read T6 checkpoints: TensorFlow was imported "
            "before TF_USE_LEGACY_KERAS=1 was set (set it in the environment)")
    if not verbose:
        tf.get_logger().setLevel(logging.ERROR)
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="tf_keras")
        warnings.filterwarnings("ignore", module="tf2onnx")
    return tf


def import_xiaothink_build_model():
    """xiaothink's own model code (build_model, the T6 classes, its ``dic`` of model types)."""
    import_tf()
    try:
        from xiaothink.llm.inference import build_model as bm
    except ImportError as e:
        raise MofError(f"xiaothink is not available ({e}); {_INSTALL_HINT}") from None
    return bm
