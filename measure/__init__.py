"""mof.measure: how close a decoding or a precision comes to its oracle, on this machine (needs
only the runtime: numpy and onnxruntime).

policies.py measures every stream refill policy against exact decoding (the table each bundle
carries, and mof-eval); report.py a quantized precision against fp32; gates.py holds every
accuracy threshold both are judged by; accuracy.py the shared comparisons; calibration.py the
measuring text and its flags (--text, --tokens); machine.py names the CPU a figure was measured on.

    from mof.measure import int8_accuracy
    table = int8_accuracy("t6.mof", text)    # int8 vs fp32 on this machine, exact and stream mode
"""


def __getattr__(name):
    if name == "int8_accuracy":
        from .report import int8_accuracy
        return int8_accuracy
    raise AttributeError(name)
