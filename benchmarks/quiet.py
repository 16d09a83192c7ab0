"""Quiet-machine bookkeeping shared by the speed benchmarks (issue 19).

A speed ratio against a peer is only a claim when the machine was quiet: under load, torch's
spin-waiting threads lose more than XLA's, which flatters lic_jax. Each benchmark therefore
measures, for every timed interval, the share of the machine's CPU time that *other* processes
used (everything but the benchmark's own process tree), records it per round in its JSON, and
prints a goal as met or not only when the worst interval stayed at or below ``THRESHOLD``;
otherwise the verdict is "not judged".

* :class:`Contention` — other processes' CPU share over an interval, from ``/proc/stat`` minus
  the utime+stime of the benchmark's own processes (``/proc/<pid>/stat``; threads included).
* :func:`cpu_info` — the CPU model, core count and flags line (what the docs tables cite).
* :func:`verdict` — 'met' / 'NOT met' / 'not judged (…)'.
* :func:`interleaved` — time several programs round by round, each interval metered;
  :func:`timing_summary` — their median / min / all seconds for a JSON record.
"""

from __future__ import annotations

import os
import platform
import time

THRESHOLD = 0.20  # the most other-process CPU share (of all cores) at which a goal may be judged


def _proc_ticks(pid) -> int:
    with open(f"/proc/{pid}/stat") as f:
        s = f.read().rsplit(")", 1)[1].split()
    return int(s[11]) + int(s[12])  # utime + stime, all threads of the process


def _busy_ticks() -> int:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # all but idle and iowait


class Contention:
    """Other processes' share of all CPU time between :meth:`start` and :meth:`stop`.

    ``pids``: the benchmark's own processes (default: this one); their CPU time is not counted.
    Returns ``None`` where ``/proc`` is unavailable (then no goal is judged)."""

    def __init__(self, pids=None):
        self.pids = list(pids) if pids else [os.getpid()]
        self.a = None

    def _read(self):
        own = 0
        for p in self.pids:
            try:
                own += _proc_ticks(p)
            except OSError:  # a worker that has exited: its ticks are gone from both readings
                pass
        return _busy_ticks(), own, time.time()

    def start(self):
        try:
            self.a = self._read()
        except OSError:
            self.a = None
        return self

    def stop(self) -> float | None:
        if self.a is None:
            return None
        try:
            b = self._read()
        except OSError:
            return None
        wall = max(b[2] - self.a[2], 1e-9)
        others = (b[0] - self.a[0]) - (b[1] - self.a[1])
        return max(0.0, others / os.sysconf("SC_CLK_TCK") / (wall * (os.cpu_count() or 1)))


def cpu_info() -> dict:
    """CPU model name, logical cores and the flags line, as ``lscpu`` shows them."""
    info = {"model": platform.processor() or platform.machine(), "cores": os.cpu_count(), "flags": ""}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k == "model name" and info["model"] in ("", platform.machine(), platform.processor()):
                    info["model"] = v.strip()
                elif k == "flags" and not info["flags"]:
                    info["flags"] = v.strip()
    except OSError:
        pass
    fl = set(info["flags"].split())
    info["simd"] = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in fl]
    return info


def verdict(met: bool, contention: float | None, threshold: float = THRESHOLD) -> str:
    """'met' / 'NOT met' when the worst measured contention ≤ threshold, else 'not judged (…)'."""
    if contention is None:
        return "not judged (contention unknown: no /proc)"
    if contention > threshold:
        return (f"not judged: other processes used up to {100 * contention:.0f}% of the CPU "
                f"(> {100 * threshold:.0f}%); rerun on a quiet machine")
    return "met" if met else "NOT met"


def interleaved(calls: dict, runs: int):
    """Run each zero-argument callable of ``calls`` (it must block until its result is ready) once
    per round, in turn, for ``runs`` rounds, each call timed and metered with :class:`Contention`.
    Returns ``({name: [seconds per round]}, the largest other-process share or None)``."""
    times, others = {name: [] for name in calls}, []
    for _ in range(runs):
        for name, call in calls.items():
            c = Contention()
            c.start()
            t = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t)
            others.append(c.stop())
    known = [o for o in others if o is not None]
    return times, (max(known) if known else None)


def timing_summary(times: dict) -> dict:
    """``{name: {median_s, min_s, runs_s}}`` of :func:`interleaved`'s times."""
    import statistics

    return {name: {"median_s": float(statistics.median(t)), "min_s": float(min(t)), "runs_s": t}
            for name, t in times.items()}
