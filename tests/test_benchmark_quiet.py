"""benchmarks/quiet.py: speed goals are judged only on a quiet machine (issue 19)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import quiet  # noqa: E402


def test_verdict_refuses_a_loaded_machine():
    assert quiet.verdict(True, 0.05) == "met" and quiet.verdict(False, 0.2) == "NOT met"
    assert quiet.verdict(True, 0.21).startswith("not judged") and quiet.verdict(False, 0.9).startswith("not judged")
    assert quiet.verdict(True, None).startswith("not judged")


def test_contention_counts_other_processes_only():
    """A child spinning one core for 1.5 s, not among the benchmark's pids, is seen as contention: at
    least a quarter of the machine's CPU (one core of ≤ 2 is half; a loaded machine shows more)."""
    c = quiet.Contention().start()
    p = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"])
    p.wait()
    share = c.stop()
    assert share is not None and share >= 0.25 / (max(1, (quiet.os.cpu_count() or 1)) / 2)
    info = quiet.cpu_info()
    assert info["cores"] >= 1 and isinstance(info["simd"], list) and info["model"]


def test_own_process_time_is_not_contention():
    """Over one interval, the meter that excludes this process and one that does not (it excludes an
    idle ``sleep`` child instead) differ by exactly this process's CPU time, whatever else runs."""
    idle = subprocess.Popen(["sleep", "30"])
    try:
        mine, other = quiet.Contention().start(), quiet.Contention(pids=[idle.pid]).start()
        t0, c0 = time.time(), time.process_time()
        while time.time() - t0 < 1.0:
            pass
        used = time.process_time() - c0
        a, b = mine.stop(), other.stop()
        wall = time.time() - t0
    finally:
        idle.kill()
    expected = used / (wall * (quiet.os.cpu_count() or 1))
    assert abs((b - a) - expected) < 0.03, (a, b, expected)  # clock ticks are 10 ms: ±0.01 per reading
