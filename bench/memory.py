"""The memory a benchmark process uses, from the operating system: resident memory now and at
its peak (Linux /proc/self/status; macOS and Windows peaks), and the peak of private memory over
a block of code (``AnonPeak``)."""

from __future__ import annotations

import sys
from pathlib import Path


def status_mb(key: str) -> float:
    """A memory line of /proc/self/status (VmRSS, VmHWM, RssAnon, …) in MB; NaN where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: VmHWM on Linux (unlike ru_maxrss it is not
    inherited across exec), ru_maxrss on macOS (bytes there), the peak working set on Windows."""
    peak = status_mb("VmHWM")
    if peak == peak:                                  # not NaN
        return peak
    if sys.platform == "win32":
        return _peak_working_set_mb()
    import resource                                   # POSIX only
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def rss_mb() -> float:
    """This process's resident memory now in MB (VmRSS on Linux; NaN elsewhere)."""
    return status_mb("VmRSS")


class AnonPeak:
    """The peak of this process's anonymous (private) resident memory while the ``with`` block runs,
    sampled every ``interval`` s from /proc/self/status RssAnon (Linux; NaN elsewhere). RSS also
    counts file pages a program maps — onnxruntime maps the weights file while it repacks the
    weights — which the kernel can drop and re-read under memory pressure; private memory it
    cannot."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak_mb = interval, float("nan")

    @staticmethod
    def read() -> float:
        return status_mb("RssAnon")

    def __enter__(self) -> "AnonPeak":
        import threading
        self._stop = threading.Event()
        self.peak_mb = self.read()

        def sample():
            while not self._stop.wait(self.interval):
                self.peak_mb = max(self.peak_mb, self.read())
        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.read())


def reset_peak_rss() -> bool:
    """Start a new peak (Linux: ``/proc/self/clear_refs`` "5" resets VmHWM to the current RSS),
    so the next ``peak_rss_mb`` is the peak of what follows. False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_working_set_mb() -> float:
    """GetProcessMemoryInfo's PeakWorkingSetSize (Windows); NaN if it cannot be read."""
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD),
                    ("PeakWorkingSetSize", ctypes.c_size_t), ("WorkingSetSize", ctypes.c_size_t),
                    ("QuotaPeakPagedPoolUsage", ctypes.c_size_t), ("QuotaPagedPoolUsage", ctypes.c_size_t),
                    ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
                    ("QuotaNonPagedPoolUsage", ctypes.c_size_t), ("PagefileUsage", ctypes.c_size_t),
                    ("PeakPagefileUsage", ctypes.c_size_t)]
    try:
        counters = Counters(cb=ctypes.sizeof(Counters))
        process = ctypes.windll.kernel32.GetCurrentProcess()
        if ctypes.windll.psapi.GetProcessMemoryInfo(process, ctypes.byref(counters), counters.cb):
            return counters.PeakWorkingSetSize / 2**20
    except (AttributeError, OSError):
        pass
    return float("nan")
