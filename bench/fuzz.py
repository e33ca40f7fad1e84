"""
Fuzzing at scale: the targets of C{tests/test_fuzz.py} (every decoder of
untrusted input, the handshake, the admin API and a node receiving garbage
on an established connection), each run through Hypothesis with far more
examples than the test suite uses.

    PYTHONPATH=. .venv/bin/python bench/fuzz.py                      # 105,500 cases
    PYTHONPATH=. .venv/bin/python bench/fuzz.py --quick              # smoke run: --scale 0.005, every target
    PYTHONPATH=. .venv/bin/python bench/fuzz.py --targets handshake,admin --scale 2
    PYTHONPATH=. .venv/bin/python bench/fuzz.py --list

Each target runs in the generate phase only (no shrinking: a failure is
counted and recorded, and the run goes on), with no example database, from
C{--seed}. Targets are spread over C{--jobs} worker processes. A failure is
an assertion of the target's check or any exception it lets out, and also
any error logged with a traceback by Twisted (an unhandled error in a
protocol, a 500 of the admin API) while the target runs.

Prints progress on stderr and one JSON object on stdout: cases, failures,
seconds and cases per second of each target, the totals, the wall time,
the first failures of each target in detail, and the environment. Exits
with status 1 if any case failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import emit, env_info, log

#: Cases per target at C{--scale 1}: 105,500 in all, the cheap
#: decoders taking the largest shares.
DEFAULT_CASES: dict[str, int] = {
    "wire.decode_control": 20_000,
    "wire.FrameDecoder": 15_000,
    "addressing": 15_000,
    "identity.from_json": 8_000,
    "identity.load_identity": 4_000,
    "config.config_from_mapping": 8_000,
    "config.load_config": 4_000,
    "persistence.decode_document": 8_000,
    "persistence.read_peers_file": 3_000,
    "seeds.parse_seed_document": 4_000,
    "handshake": 10_000,
    "admin": 5_000,
    "pool.injection": 1_500,
}
#: Failures recorded in detail per target (all are counted).
MAX_RECORDED = 5


def run_target(name: str, cases: int, seed: int) -> dict[str, Any]:
    """
    Run C{cases} generated cases of target C{name} in this process.

    @return: cases run, failures, seconds, and the first failures in detail.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from twisted.logger import globalLogBeginner

    from tests.test_fuzz import TARGETS

    logged: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            failure = event["log_failure"]
            logged.append(f"{failure.type.__name__}: {failure.getErrorMessage()}"[:300])

    globalLogBeginner.beginLoggingTo([observe], discardBuffer=True, redirectStandardIO=False)
    target = next(t for t in TARGETS if t.name == name)
    harness = target.open_harness() if target.open_harness is not None else None
    ran = 0
    failures = 0
    recorded: list[dict[str, str]] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=target.strategy)
    def fuzz(case: Any) -> None:
        nonlocal ran, failures
        ran += 1
        before = len(logged)
        try:
            target.check(case, harness)
        except Exception as e:  # noqa: BLE001 (any exception is a finding)
            failures += 1
            if len(recorded) < MAX_RECORDED:
                recorded.append({"error": f"{type(e).__name__}: {e}"[:500], "case": repr(case)[:500]})
            return
        if len(logged) > before:
            failures += 1
            if len(recorded) < MAX_RECORDED:
                recorded.append({"error": "logged: " + "; ".join(logged[before:])[:500], "case": repr(case)[:500]})

    started = time.perf_counter()
    try:
        fuzz()
    finally:
        if harness is not None and target.close_harness is not None:
            target.close_harness(harness)
    seconds = time.perf_counter() - started
    return {
        "cases": ran,
        "failures": failures,
        "seconds": round(seconds, 2),
        "cases_per_second": round(ran / seconds, 1) if seconds else None,
        "first_failures": recorded,
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="multiply every target's case count (default 1: 105,500 cases; --quick 0.005)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: about 530 cases, at least one per target")
    parser.add_argument("--targets", default="", help="comma-separated target names (default: all; see --list)")
    parser.add_argument("--seed", type=int, default=20240501, help="Hypothesis seed (default %(default)s)")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: the CPU count)"
    )
    parser.add_argument("--list", action="store_true", help="list the targets and their default case counts, then exit")
    args = parser.parse_args()
    if args.list:
        for name, count in DEFAULT_CASES.items():
            print(f"{name:32s} {count:>7,}")
        return 0
    if args.scale is None:
        args.scale = 0.005 if args.quick else 1.0
    names = [n for n in args.targets.split(",") if n] or list(DEFAULT_CASES)
    unknown = sorted(set(names) - set(DEFAULT_CASES))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; see --list")
    plan = {name: max(1, round(DEFAULT_CASES[name] * args.scale)) for name in names}
    log(f"fuzzing {sum(plan.values()):,} cases over {len(plan)} targets with {args.jobs} job(s), seed {args.seed}")
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    # Import the targets once here: the forked workers inherit them.
    import tests.test_fuzz  # noqa: F401

    # Longest targets first, so that the jobs finish together.
    order = sorted(
        plan, key=lambda n: -plan[n] / {"pool.injection": 50, "persistence.read_peers_file": 130}.get(n, 400)
    )
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=context) as pool:
        futures = {pool.submit(run_target, name, plan[name], args.seed): name for name in order}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                result = future.result()
            except Exception as e:  # noqa: BLE001 (the harness itself broke: the whole target failed)
                result = {
                    "cases": 0,
                    "failures": plan[name],
                    "seconds": None,
                    "cases_per_second": None,
                    "first_failures": [{"error": f"{type(e).__name__}: {e}"[:500], "case": ""}],
                }
            results[name] = result
            log(f"  {name:32s} {result['cases']:>7,} cases  {result['failures']} failures  {result['seconds']} s")
    wall = time.perf_counter() - started
    total = sum(r["cases"] for r in results.values())
    failed = sum(r["failures"] for r in results.values())
    emit(
        {
            "targets": {name: results[name] for name in names},
            "total_cases": total,
            "total_failures": failed,
            "wall_seconds": round(wall, 1),
            "cases_per_second": round(total / wall, 1),
            "settings": {
                "scale": args.scale,
                "quick": args.quick,
                "seed": args.seed,
                "jobs": args.jobs,
                "planned": plan,
            },
            "env": {**env_info(), "hypothesis": _hypothesis_version(), "commit": _git_commit()},
        }
    )
    return 1 if failed else 0


def _hypothesis_version() -> str:
    import hypothesis

    return hypothesis.__version__


if __name__ == "__main__":
    sys.exit(main())
