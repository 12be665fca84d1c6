"""The C++ sources of mof's optional native onnxruntime ops (docs/native.md). No Python here:
mof.runtime.native builds them with the host's compiler, from a checkout, an editable install or
an installed wheel alike (they sit beside the package folders in each)."""
