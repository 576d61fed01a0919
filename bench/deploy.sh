#!/usr/bin/env bash
# bench/deploy.sh: one deploy (a directory, a configuration file from a
# template, a line in a file, a package that is already installed, a
# command run only when the configuration changed) on N hosts that are
# aliases of one loopback sshd, each under its own directory: a first run
# that changes every host and a second run that changes nothing, with
# mitostar (bench/deploy/deploy.star), ansible-playbook (Debian's
# ansible-core, bench/deploy/deploy.yml) and ansible-playbook with the
# Mitogen strategy (Debian's ansible-mitogen). Every host's end state is
# checked after each side's runs. Prints a markdown table and writes
# bench/out/deploy.jsonl. See bench/README.md, "The deploy rows".
#
#   bench/deploy.sh                    20 and 50 hosts, the three sides
#   BENCH_SMOKE=1 BENCH_SSH_SMOKE=1 bench/deploy.sh
#                                      2 hosts, mitostar only (smoke mode
#                                      starts no sshd without BENCH_SSH_SMOKE)
#   DEPLOY_HOSTS="20" DEPLOY_SIDES="mitostar mitogen" bench/deploy.sh
#
# Needs root and openssh-server; the Ansible sides need ansible-core and
# ansible-mitogen (apt-get install ansible-core ansible-mitogen), and are
# left out, saying so, when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
OUT=${BENCH_OUT:-bench/out}
mkdir -p "$OUT"

if [ -n "${BENCH_SMOKE:-}" ]; then
	HOSTS=${DEPLOY_HOSTS:-2}
	SIDES=${DEPLOY_SIDES:-mitostar}
else
	HOSTS=${DEPLOY_HOSTS:-20 50}
	SIDES=${DEPLOY_SIDES:-mitostar ansible mitogen}
fi
MITOGEN_STRATEGY=/usr/lib/python3/dist-packages/ansible_mitogen/plugins/strategy
if [ -n "${BENCH_NO_SSHD:-}" ] || { [ -n "${BENCH_SMOKE:-}" ] && [ -z "${BENCH_SSH_SMOKE:-}" ]; }; then
	echo "deploy: no sshd (BENCH_NO_SSHD, or smoke mode without BENCH_SSH_SMOKE): no deploy rows" >&2
	exit 0
fi
if [ "$(id -u)" != 0 ] || [ ! -x /usr/sbin/sshd ]; then
	echo "deploy: needs root and /usr/sbin/sshd; no deploy rows" >&2
	exit 0
fi
if ! command -v ansible-playbook >/dev/null; then
	echo "deploy: ansible-playbook is not installed (apt-get install ansible-core ansible-mitogen): no Ansible rows" >&2
	SIDES=$(echo "$SIDES" | tr ' ' '\n' | grep -vx -e ansible -e mitogen | tr '\n' ' ')
elif [ ! -f "$MITOGEN_STRATEGY/mitogen_linear.py" ]; then
	echo "deploy: ansible-mitogen is not installed: no Mitogen rows" >&2
	SIDES=$(echo "$SIDES" | tr ' ' '\n' | grep -vx mitogen | tr '\n' ' ')
fi

WORK=$(mktemp -d /tmp/mitostar-bench-deploy.XXXXXX)
chmod 755 "$WORK"
. bench/sshd.sh
trap 'stop_sshd; rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One sshd on 127.0.0.1 serves every host (its start-up
# limits raised for parallel connections).
start_sshd "MaxStartups 200:30:400" "MaxSessions 200"
PORT=${BENCH_SSH##*:} KEY=$BENCH_SSH_KEY KNOWN_HOSTS=$BENCH_SSH_KNOWN_HOSTS

make -s build

# hostnames N: h01 h02 ... (the aliases)
hostnames() { for i in $(seq -w 1 "$1"); do printf 'h%s ' "$i"; done; }

inventory() { # inventory FILE HOST...
	local f=$1
	shift
	{
		echo "[all:vars]"
		echo "ansible_host=127.0.0.1"
		echo "ansible_port=$PORT"
		echo "ansible_user=root"
		echo "ansible_ssh_private_key_file=$KEY"
		echo "ansible_ssh_common_args=-o UserKnownHostsFile=$KNOWN_HOSTS"
		echo "ansible_python_interpreter=/usr/bin/python3"
		echo "[hosts]"
		printf '%s\n' "$@"
	} >"$f"
}

# run_side SIDE BASE HOST...: one deploy; prints what it changed as
# "CHANGED_HOSTS CHANGES" and fails when the side failed.
run_side() {
	local side=$1 base=$2
	shift 2
	local log=$WORK/$side.log
	case $side in
	mitostar)
		inventory "$WORK/inventory" "$@"
		# stdout: the script's JSON line; stderr: the progress lines and the recap.
		bin/mitostar -i "$WORK/inventory" --forks "$#" --progress never bench/deploy/deploy.star "$base" >"$log" 2>"$log.err" || {
			cat "$log" "$log.err" >&2
			return 1
		}
		python3 -c 'import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); print(r["changed_hosts"], r["changes"])' "$log"
		;;
	ansible | mitogen)
		inventory "$WORK/inventory" "$@"
		local env=(ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_LOCAL_TEMP="$WORK/ansible-local"
			ANSIBLE_REMOTE_TEMP="$WORK/ansible-remote" ANSIBLE_SSH_CONTROL_PATH_DIR="$WORK/cp" ANSIBLE_NOCOLOR=1)
		if [ "$side" = mitogen ]; then
			env+=(ANSIBLE_STRATEGY_PLUGINS="$MITOGEN_STRATEGY" ANSIBLE_STRATEGY=mitogen_linear)
		fi
		env "${env[@]}" ansible-playbook -i "$WORK/inventory" -f "$#" -e "base_dir=$base" bench/deploy/deploy.yml >"$log" 2>&1 || {
			tail -40 "$log" >&2
			return 1
		}
		# PLAY RECAP: "h01 : ok=5 changed=5 unreachable=0 failed=0 ..."
		awk '/^h[0-9]+ +:/ { for (i = 1; i <= NF; i++) if ($i ~ /^changed=/) { n = substr($i, 9); c += n; if (n > 0) h++ } }
			END { print h + 0, c + 0 }' "$log"
		;;
	esac
}

# verify SIDE BASE HOST...: every host's files are what the deploy makes,
# the command ran exactly once.
verify() {
	local side=$1 base=$2 bad=0 h d
	shift 2
	for h in "$@"; do
		d=$base/$h
		if ! printf '# %s: written by the deploy benchmark\nlisten = 127.0.0.1:8080\nbackend = 10.0.0.1:80\nbackend = 10.0.0.2:80\nbackend = 10.0.0.3:80\n' "$h" |
			cmp -s - "$d/app.conf" ||
			[ "$(stat -c %a "$d/app.conf")" != 644 ] || [ ! -d "$d/conf.d" ] ||
			[ "$(stat -c %a "$d/conf.d")" != 755 ] ||
			[ "$(cat "$d/hosts.allow")" != "sshd: 127.0.0.1" ] ||
			[ "$(cat "$d/reloaded")" != reloaded ]; then
			echo "deploy: $side: wrong end state on $h:" >&2
			ls -la "$d" >&2 || true
			head -20 "$d/app.conf" "$d/hosts.allow" "$d/reloaded" >&2 || true
			bad=1
		fi
	done
	return $bad
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

: >"$OUT/deploy.jsonl"
declare -A SECS
for side in $SIDES; do
	# Untimed warm-up on one host: mitostar ships its binary to the
	# target's cache, Ansible compiles its modules; the page cache warms.
	run_side "$side" "$WORK/warm-$side" h00 >/dev/null
done
for n in $HOSTS; do
	read -r -a hosts <<<"$(hostnames "$n")"
	for side in $SIDES; do
		base=$WORK/$side-$n
		for run in first second; do
			echo "== deploy, $n hosts, $side, $run run" >&2
			t0=$(now)
			changed=$(run_side "$side" "$base" "${hosts[@]}")
			secs=$(since "$t0")
			read -r changed_hosts changes <<<"$changed"
			echo "   $secs s, $changed_hosts hosts changed ($changes changes)" >&2
			if [ "$run" = first ] && [ "$changed_hosts" != "$n" ]; then
				echo "deploy: $side: the first run changed $changed_hosts of $n hosts" >&2
				exit 1
			fi
			if [ "$run" = second ] && [ "$changes" != 0 ]; then
				echo "deploy: $side: the second run changed something ($changes changes)" >&2
				exit 1
			fi
			SECS[$n,$run,$side]=$secs
			printf '{"metric": "deploy_%s_%s", "side": "%s", "seconds": %s, "changed_hosts": %s, "changes": %s}\n' \
				"$n" "$run" "$side" "$secs" "$changed_hosts" "$changes" >>"$OUT/deploy.jsonl"
		done
		verify "$side" "$base" "${hosts[@]}"
		rm -rf "$base"
	done
done

ratio() { if [ -n "${1:-}" ] && [ -n "${2:-}" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f×", a / b }'; else echo -; fi; }
echo
echo "| deploy | mitostar (s) | ansible-playbook (s) | Ansible + Mitogen (s) | ansible-playbook / mitostar | Ansible + Mitogen / mitostar |"
echo "|---|---|---|---|---|---|"
for n in $HOSTS; do
	for run in first second; do
		m=${SECS[$n,$run,mitostar]:-} a=${SECS[$n,$run,ansible]:-} g=${SECS[$n,$run,mitogen]:-}
		echo "| $n hosts, $run run | ${m:--} | ${a:--} | ${g:--} | $(ratio "$a" "$m") | $(ratio "$g" "$m") |"
	done
done
