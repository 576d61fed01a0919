#!/usr/bin/env bash
# bench/run.sh: run the side-by-side workloads three ways in one go and
# print one markdown table: mitostar (bench/bench.star), Python Mitogen
# (bench/mitogen_bench.py, Debian's python3-mitogen) and the raw floor
# (bench/floor). See bench/README.md.
#
#   bench/run.sh                  full run (several minutes)
#   BENCH_SMOKE=1 bench/run.sh    tiny counts, under a minute, no daemons (CI runs this)
#   BENCH_SSH=user@host:port BENCH_SSH_KEY=FILE BENCH_SSH_KNOWN_HOSTS=FILE bench/run.sh
#                                 ssh rows against that server
#   PROFILE=1 bench/run.sh        also writes CPU/heap profiles of every
#                                 mitostar context to bench/out/prof
#
# Last, bench/deploy.sh times one deploy on 20 and 50 loopback ssh hosts
# with mitostar, ansible-playbook and Ansible with the Mitogen strategy
# (in smoke mode only with BENCH_SSH_SMOKE=1: 2 hosts, mitostar only;
# BENCH_NO_SSHD=1 skips it).
#
# Without BENCH_SSH, as root with /usr/sbin/sshd installed, the ssh rows
# run against a throwaway sshd on 127.0.0.1 that this script starts (its
# own host key, authorized key and known_hosts in a temporary directory)
# and stops by its pid on exit. BENCH_SSH_SMOKE=1 does that in smoke mode
# too; BENCH_NO_SSHD=1 never does.
#
# The three sides take the same arguments, so each does the same work.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"

if [ -n "${BENCH_SMOKE:-}" ]; then
	ARGS=(--first-call-reps 3 --rtt 200 --pipelined 100,1000 --pipelined-reps 2 --two-hop 200
		--children 5 --children-reps 1 --bulk-mib 4 --bulk-reps 2
		--put-mib 8 --put-reps 1 --tree-files 20 --tree-big-mib 1 --rsync-reps 1 --ssh-reps 2)
	STEP_TIMEOUT=60
else
	ARGS=()
	STEP_TIMEOUT=900
fi
ARGS+=(--data-dir "$OUT/data")

# ---- the ssh target ----

# start_sshd and stop_sshd (bench/sshd.sh)
. bench/sshd.sh
trap stop_sshd EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "${BENCH_SSH:-}" ] && [ -z "${BENCH_NO_SSHD:-}" ] &&
	{ [ -z "${BENCH_SMOKE:-}" ] || [ -n "${BENCH_SSH_SMOKE:-}" ]; }; then
	if [ "$(id -u)" = 0 ] && [ -x /usr/sbin/sshd ] && command -v ssh-keygen >/dev/null && command -v ssh >/dev/null; then
		start_sshd
	else
		echo "bench: no ssh rows (set BENCH_SSH, or run as root with openssh-server installed)" >&2
	fi
fi
if [ -n "${BENCH_SSH:-}" ]; then
	ARGS+=(--ssh "$BENCH_SSH" --ssh-key "${BENCH_SSH_KEY:?BENCH_SSH_KEY is needed with BENCH_SSH}"
		--ssh-known-hosts "${BENCH_SSH_KNOWN_HOSTS:?BENCH_SSH_KNOWN_HOSTS is needed with BENCH_SSH}")
fi

# ---- the three sides ----

make -s build
go build -o "$OUT/floor" ./bench/floor
MS=(bin/mitostar)
if [ -n "${PROFILE:-}" ]; then
	MS+=(--profile "$OUT/prof")
fi

echo "== mitostar" >&2
timeout -k 10 3600 "${MS[@]}" bench/bench.star "${ARGS[@]}" >"$OUT/mitostar.jsonl"
echo "== floor" >&2
timeout -k 10 3600 "$OUT/floor" --spawn-binary bin/mitostar --spawn-args version "${ARGS[@]}" >"$OUT/floor.jsonl"

PY=/usr/bin/python3
MITOGEN_STATUS=0
if "$PY" -c 'import mitogen' 2>/dev/null; then
	echo "== Python Mitogen" >&2
	# Each workload has its own --step-timeout inside; this one is the backstop.
	timeout -k 10 7200 "$PY" bench/mitogen_bench.py --step-timeout "$STEP_TIMEOUT" "${ARGS[@]}" \
		>"$OUT/mitogen.jsonl" || MITOGEN_STATUS=$?
else
	echo "bench: Python Mitogen is not installed (apt-get install python3-mitogen): its column stays empty" >&2
	: >"$OUT/mitogen.jsonl"
fi

# ---- round trips with the placement fixed ----
# On a 2-vCPU VM an unpinned round trip is bimodal, for the floor's
# ping-pong as for mitostar: each message costs a few microseconds while
# the kernel keeps both processes on one vCPU, and 45-90 us once it puts
# them on two, where every message wakes a halted vCPU (docs/benchmarks.md,
# "Round trips: placement, and why there are pinned rows"). Which placement a run gets is the
# kernel's choice, and the sides run minutes apart, so their unpinned
# medians may compare one placement with the other. These rows run every
# side's round trips again with the placement fixed, the same for all:
# every process on one CPU (metric names with "_1cpu" appended), then the
# caller on that CPU and its child on another ("_2cpu", the plain round
# trip only). The bulk transfers run on one CPU too: unpinned, the floor's
# bare pipe swings between about 2.4 and 5-8 GB/s from run to run. The
# CPUs are the first two this script may run on.
suffixed() { sed -E 's/"metric": ?"([^"]+)"/"metric": "\1_'"$1"'"/'; }
# pinned SUFFIX ONLY [ARGS...]: every side's ONLY workloads inside
# taskset -c $CPU_A, with ARGS added, their rows renamed.
pinned() {
	local suffix=$1 only=$2
	shift 2
	timeout -k 10 3600 taskset -c "$CPU_A" bin/mitostar bench/bench.star --only "$only" "${ARGS[@]}" "$@" |
		suffixed "$suffix" >>"$OUT/mitostar.jsonl"
	timeout -k 10 3600 taskset -c "$CPU_A" "$OUT/floor" --only "$only" "${ARGS[@]}" "$@" | suffixed "$suffix" >>"$OUT/floor.jsonl"
	if [ -s "$OUT/mitogen.jsonl" ]; then
		timeout -k 10 7200 taskset -c "$CPU_A" "$PY" bench/mitogen_bench.py --step-timeout "$STEP_TIMEOUT" --only "$only" "${ARGS[@]}" "$@" |
			suffixed "$suffix" >>"$OUT/mitogen.jsonl" || MITOGEN_STATUS=$?
	fi
}
read -r CPU_A CPU_B < <(python3 -c 'import os; print(*sorted(os.sched_getaffinity(0))[:2])')
if command -v taskset >/dev/null && [ -n "${CPU_B:-}" ]; then
	echo "== round trips and bulk transfers on one vCPU (taskset -c $CPU_A)" >&2
	pinned 1cpu call_rtt,two_hop,bulk
	echo "== round trips across two vCPUs (caller on $CPU_A, child on $CPU_B)" >&2
	pinned 2cpu call_rtt --child-cpu "$CPU_B"
else
	echo "bench: no pinned rows (they need taskset and two CPUs)" >&2
fi

python3 bench/table.py "$OUT/mitostar.jsonl" "$OUT/mitogen.jsonl" "$OUT/floor.jsonl"

# ---- many hosts (bench/fanout.py) ----
# 50 aliases of the ssh target: mitostar exec and a connect/each script
# against ansible -m command, plain and with the Mitogen strategy. The
# smoke run uses 5 local aliases (no daemon); Ansible's rows are left out
# where it is not installed.
if [ -n "${BENCH_SMOKE:-}" ]; then
	FAN=(--local --hosts 5 --reps 1)
elif [ -n "${FANOUT_SSH:-}" ]; then
	FAN=(--ssh "$FANOUT_SSH" --ssh-key "$BENCH_SSH_KEY" --ssh-known-hosts "$BENCH_SSH_KNOWN_HOSTS" --hosts 50 --reps 5)
else
	FAN=()
	echo "bench: no many-hosts rows (they need an ssh target)" >&2
fi
if [ ${#FAN[@]} -gt 0 ]; then
	echo "== many hosts" >&2
	timeout -k 10 3600 /usr/bin/python3 bench/fanout.py --mitostar bin/mitostar --out "$OUT/fanout.jsonl" "${FAN[@]}"
	/usr/bin/python3 bench/fanout.py --table "$OUT/fanout.jsonl"
fi

# ---- the deploy rows: mitostar vs ansible-playbook (bench/deploy.sh) ----
# 20 and 50 loopback ssh hosts (2 hosts, mitostar only, in smoke mode).
stop_sshd
bench/deploy.sh
if [ "$MITOGEN_STATUS" != 0 ]; then
	echo "bench: the Python Mitogen side failed (status $MITOGEN_STATUS): its missing rows show \"-\"" >&2
	exit 1
fi
