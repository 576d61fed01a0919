#!/usr/bin/env bash
# bench/run.sh: run the side-by-side workloads three ways in one go and
# print one markdown table: mitostar (bench/bench.star), Python Mitogen
# (bench/mitogen_bench.py, Debian's python3-mitogen) and the raw floor
# (bench/floor). See bench/README.md.
#
#   bench/run.sh                  full run (a few minutes)
#   BENCH_SMOKE=1 bench/run.sh    tiny counts, under 30 s (CI runs this)
#   BENCH_SSH=user@host:port BENCH_SSH_KEY=FILE BENCH_SSH_KNOWN_HOSTS=FILE bench/run.sh
#                                 adds the ssh rows
#   PROFILE=1 bench/run.sh        also writes CPU/heap profiles of every
#                                 mitostar context to bench/out/prof
#
# The three sides take the same arguments, so each does the same work.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"

if [ -n "${BENCH_SMOKE:-}" ]; then
	ARGS=(--first-call-reps 3 --rtt 200 --pipelined 100,1000 --pipelined-reps 2 --two-hop 200
		--children 5 --children-reps 1 --bulk-mib 4 --bulk-reps 2)
else
	ARGS=()
fi
if [ -n "${BENCH_SSH:-}" ]; then
	ARGS+=(--ssh "$BENCH_SSH" --ssh-key "${BENCH_SSH_KEY:?BENCH_SSH_KEY is needed with BENCH_SSH}"
		--ssh-known-hosts "${BENCH_SSH_KNOWN_HOSTS:?BENCH_SSH_KNOWN_HOSTS is needed with BENCH_SSH}")
fi

make -s build
go build -o "$OUT/floor" ./bench/floor
MS=(bin/mitostar)
if [ -n "${PROFILE:-}" ]; then
	MS+=(--profile "$OUT/prof")
fi

echo "== mitostar" >&2
"${MS[@]}" bench/bench.star "${ARGS[@]}" >"$OUT/mitostar.jsonl"
echo "== floor" >&2
"$OUT/floor" --spawn-binary bin/mitostar --spawn-args version "${ARGS[@]}" >"$OUT/floor.jsonl"

PY=/usr/bin/python3
if "$PY" -c 'import mitogen' 2>/dev/null; then
	echo "== Python Mitogen" >&2
	timeout 1200 "$PY" bench/mitogen_bench.py "${ARGS[@]}" >"$OUT/mitogen.jsonl"
else
	echo "bench: Python Mitogen is not installed (apt-get install python3-mitogen): its column stays empty" >&2
	: >"$OUT/mitogen.jsonl"
fi

python3 bench/table.py "$OUT/mitostar.jsonl" "$OUT/mitogen.jsonl" "$OUT/floor.jsonl"
