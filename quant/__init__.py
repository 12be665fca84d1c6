"""mof.quant: int8 variants of a bundle's graphs and their accuracy against fp32; the stream
policies' fidelity against exact decoding (policies.py, mof-eval).

    from mof.quant import int8_accuracy
    table = int8_accuracy("t6.mof", text)    # int8 vs fp32 on this machine, exact and stream mode
"""


def __getattr__(name):
    if name == "int8_accuracy":
        from .bundle_quant import int8_accuracy
        return int8_accuracy
    raise AttributeError(name)
