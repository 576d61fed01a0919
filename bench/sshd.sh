# bench/sshd.sh: start_sshd and stop_sshd, a throwaway sshd on 127.0.0.1
# for the ssh rows (run.sh) and the deploy rows (deploy.sh). Sourced.

SSHD_DIR= SSHD_PID= FANOUT_USER= FANOUT_SSH=${BENCH_SSH:-}
stop_sshd() {
	if [ -n "$SSHD_PID" ]; then
		kill "$SSHD_PID" 2>/dev/null || true
		wait "$SSHD_PID" 2>/dev/null || true
		SSHD_PID=
	fi
	if [ -n "$SSHD_DIR" ]; then
		rm -rf "$SSHD_DIR"
		SSHD_DIR=
	fi
}

# start_sshd [CONFIG_LINE...]: a throwaway OpenSSH server on 127.0.0.1,
# key login as root, with CONFIG_LINEs first in its
# config (sshd takes the first value of a keyword); sets BENCH_SSH,
# BENCH_SSH_KEY and BENCH_SSH_KNOWN_HOSTS, FANOUT_SSH (the same server as
# mtbench, a user with a stock home: root's shell start-up files may be
# anything; it is left in place, as the tests leave theirs), and SSHD_DIR
# and SSHD_PID for stop_sshd.
# A port taken by someone else between our probe and sshd's bind makes
# sshd exit at once: then another port is tried.
start_sshd() {
	SSHD_DIR=$(mktemp -d /tmp/mitostar-bench-sshd.XXXXXX)
	chmod 755 "$SSHD_DIR"
	local d=$SSHD_DIR
	ssh-keygen -q -t ed25519 -N '' -C mitostar-bench -f "$d/hostkey"
	ssh-keygen -q -t ed25519 -N '' -C mitostar-bench -f "$d/id"
	mkdir -m 755 "$d/auth"
	cp "$d/id.pub" "$d/auth/root"
	if id mtbench >/dev/null 2>&1 || useradd -m -s /bin/sh mtbench 2>/dev/null; then
		cp "$d/id.pub" "$d/auth/mtbench"
		FANOUT_USER=mtbench
	fi
	mkdir -p -m 755 /run/sshd
	local try port
	for try in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			continue # someone listens there
		fi
		{ printf '%s\n' "$@"; cat <<EOF; } >"$d/sshd_config"
Port $port
ListenAddress 127.0.0.1
HostKey $d/hostkey
PidFile $d/sshd.pid
AuthorizedKeysFile $d/auth/%u
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin yes
UsePAM yes
UseDNS no
MaxStartups 200:30:400
MaxSessions 200
EOF
		/usr/sbin/sshd -t -f "$d/sshd_config"
		rm -f "$d/sshd.pid"
		/usr/sbin/sshd -D -e -f "$d/sshd_config" </dev/null >/dev/null 2>"$d/sshd.log" &
		SSHD_PID=$!
		local waited=0
		while [ ! -s "$d/sshd.pid" ] && kill -0 "$SSHD_PID" 2>/dev/null && [ $waited -lt 300 ]; do
			sleep 0.05
			waited=$((waited + 1))
		done
		if [ -s "$d/sshd.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$d/hostkey.pub")" >"$d/known_hosts"
			BENCH_SSH=root@127.0.0.1:$port BENCH_SSH_KEY=$d/id BENCH_SSH_KNOWN_HOSTS=$d/known_hosts
			if [ -n "${FANOUT_USER:-}" ]; then
				FANOUT_SSH=$FANOUT_USER@127.0.0.1:$port
			fi
			ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$d/known_hosts" \
				-o IdentitiesOnly=yes -i "$d/id" -p "$port" root@127.0.0.1 true
			echo "bench: sshd on 127.0.0.1:$port (pid $SSHD_PID, $d)" >&2
			return 0
		fi
		kill "$SSHD_PID" 2>/dev/null || true
		wait "$SSHD_PID" 2>/dev/null || true
		SSHD_PID=
	done
	echo "bench: could not start sshd on 127.0.0.1 (last log: $(cat "$d/sshd.log"))" >&2
	return 1
}

