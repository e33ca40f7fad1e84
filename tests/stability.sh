#!/usr/bin/env bash
# The README's test command, run several times in a row while one other
# CPU-bound process runs beside it (issue 11: the suite must pass 10 times in
# a row on a busy 2-core machine). Not part of CI: run it by hand.
#
#   tests/stability.sh                      # 10 runs, .venv made as the README says
#   STABILITY_RUNS=3 STABILITY_VENV=/work/venv STABILITY_INSTALL=0 STABILITY_JOBS=2 tests/stability.sh
#
# Settings (environment):
#   STABILITY_RUNS     runs (default 10)
#   STABILITY_VENV     the virtualenv (default .venv)
#   STABILITY_INSTALL  1 (default): first run the README's
#                      "python3 -m venv VENV && VENV/bin/pip install '.[test]'";
#                      0: use VENV as it is (it needs the test dependencies;
#                      the tests import this checkout, run from its root)
#   STABILITY_JOBS     trial's -j (default: none, as in the README)
#   STABILITY_TESTS    what trial runs (default: tests)
#   STABILITY_LOGS     where each run's output is kept (default: a new
#                      temporary directory)
#
# Prints one line per run and then "K passed runs of N"; exits 1 unless
# every run passed. (tests/stalls.py runs trial with a reactor that stalls
# now and then, which shows a dependence on the machine's load sooner.)
set -uo pipefail
cd "$(dirname "$0")/.."

runs=${STABILITY_RUNS:-10}
venv=${STABILITY_VENV:-.venv}
install=${STABILITY_INSTALL:-1}
jobs=${STABILITY_JOBS:-}
tests=${STABILITY_TESTS:-tests}
logs=${STABILITY_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/p2pool-stability.XXXXXX")}
mkdir -p "$logs"

case $runs in ''|*[!0-9]*|0) echo "STABILITY_RUNS must be a positive integer, got '$runs'" >&2; exit 2 ;; esac
case $jobs in ''|[1-9]|[1-9][0-9]) ;; *) echo "STABILITY_JOBS must be a small positive integer, got '$jobs'" >&2; exit 2 ;; esac

if [ "$install" = 1 ]; then
  echo "installing: python3 -m venv $venv && $venv/bin/pip install '.[test]'"
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install '.[test]'; } > "$logs/install.log" 2>&1; then
    tail -n 20 "$logs/install.log"
    echo "the install failed (log: $logs/install.log)" >&2
    exit 2
  fi
elif [ ! -x "$venv/bin/python" ]; then
  echo "no virtualenv at $venv (STABILITY_INSTALL=0)" >&2
  exit 2
fi

trial=("$venv/bin/python" -W error::DeprecationWarning -m twisted.trial)
[ -n "$jobs" ] && trial+=("-j$jobs")

# The CPU-bound neighbour, stopped however this script ends.
python3 -c 'while True: pass' &
burner=$!
stop_burner() { kill "$burner" 2>/dev/null; wait "$burner" 2>/dev/null; }
trap stop_burner EXIT
trap 'exit 130' INT TERM
echo "CPU burner running (pid $burner); $runs runs of: ${trial[*]} $tests; logs in $logs"

passed=0
for i in $(seq 1 "$runs"); do
  log="$logs/run-$i.log"
  started=$SECONDS
  "${trial[@]}" --temp-directory="$logs/trial-$i" $tests > "$log" 2>&1
  status=$?
  summary=$(tail -n 1 "$log")
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    echo "run $i/$runs: passed in $((SECONDS - started)) s: $summary"
  else
    echo "run $i/$runs: FAILED (exit $status) in $((SECONDS - started)) s: $summary (log: $log)"
    # The failing tests: trial names each after its traceback.
    grep -E '^tests\.[A-Za-z0-9_.]+$' "$log" | sort -u | sed 's/^/    /'
  fi
  if ! kill -0 "$burner" 2>/dev/null; then
    echo "the CPU burner died during run $i" >&2
    exit 2
  fi
done

echo "$passed passed runs of $runs"
[ "$passed" -eq "$runs" ]
