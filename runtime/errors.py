"""The one exception type that means "the user gave us something wrong".

Command-line tools print a MofError as a single line and exit non-zero;
anything else is a bug and keeps its traceback.
"""


class MofError(Exception):
    """A user-facing error: bad input, missing file, mismatched shapes."""


class BundleError(MofError):
    """A bundle directory is missing, corrupt, tampered with or of another format."""


class OnnxruntimeWarning(UserWarning):
    """This onnxruntime (or execution provider) is not known to reproduce a bundle's recorded figures."""
