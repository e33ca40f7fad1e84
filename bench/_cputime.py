"""
Run a Python script and report, on stderr when it ends, the CPU seconds of
this process and the part of them spent in the cyclic garbage collector,
its collections per generation, and the peak RSS. Used to compare two
trees' benchmarks in CPU time, which a busy machine disturbs less than wall
time:

    PYTHONPATH=. /work/venv/bin/python bench/_cputime.py bench/simulate.py --nodes 200 --seed 1
"""

from __future__ import annotations

import atexit
import gc
import resource
import runpy
import sys
import time
from typing import Any

_gc = {"started": 0.0, "seconds": 0.0, "collections": [0, 0, 0]}


def _timer(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc["started"] = time.process_time()
    else:
        _gc["seconds"] += time.process_time() - _gc["started"]
        _gc["collections"][info["generation"]] += 1


def _report() -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"cpu {usage.ru_utime + usage.ru_stime:.2f} s, gc {_gc['seconds']:.2f} s, "
        f"collections {_gc['collections']}, peak rss {usage.ru_maxrss // 1024} MiB",
        file=sys.stderr,
    )


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: _cputime.py SCRIPT [ARGS...]")
    gc.callbacks.append(_timer)
    atexit.register(_report)
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
