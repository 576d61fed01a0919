"""Many hosts: connect and run one command on N inventory hosts, four ways.

    /usr/bin/python3 bench/fanout.py --mitostar bin/mitostar --out OUT.jsonl \
        (--ssh USER@HOST:PORT --ssh-key FILE --ssh-known-hosts FILE | --local) [--hosts N] [--reps N]
    /usr/bin/python3 bench/fanout.py --table OUT.jsonl

The hosts are N inventory aliases of one target (an sshd, or the local
machine with --local): `mitostar exec all -- uname -r`, a script using
connect/each (bench/fanout.star), `ansible all -f N -m command -a "uname -r"`
and the same with ansible-mitogen's mitogen_linear strategy. Each runs once
untimed (mitostar ships its binary to the target then), then --reps times;
every run must report all N hosts ok. Rows are JSON lines like bench.star's;
the Ansible rows are left out when Ansible (or ansible-mitogen) is not
installed. --table prints the markdown table with the speed-ups.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MITOGEN_STRATEGY = "/usr/lib/python3/dist-packages/ansible_mitogen/plugins/strategy"


def inventory(path, args):
    lines = ["[all:vars]", "ansible_python_interpreter=/usr/bin/python3"]
    if args.local:
        lines.append("ansible_connection=local")
    else:
        user, hostport = args.ssh.split("@", 1)
        host, port = hostport.rsplit(":", 1)
        lines += [
            "ansible_host=" + host, "ansible_port=" + port, "ansible_user=" + user,
            "ansible_ssh_private_key_file=" + args.ssh_key,
            "ansible_ssh_common_args='-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes'" % args.ssh_known_hosts,
        ]
    lines.append("[hosts]")
    lines += ["h%02d" % i for i in range(1, args.hosts + 1)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def run(argv, env, check):
    t0 = time.monotonic()
    p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    elapsed = time.monotonic() - t0
    problem = check(p)
    if problem:
        sys.exit("fanout: %s: %s\nstdout:\n%s\nstderr:\n%s" % (" ".join(argv), problem, p.stdout[-3000:], p.stderr[-3000:]))
    return elapsed, p.stdout


def row(metric, values, unit):
    return {"metric": metric, "value": statistics.median(values), "unit": unit, "n": len(values),
            "median": statistics.median(values), "p99": max(values)}


def measure(args):
    tmp = tempfile.mkdtemp(prefix="mitostar-fanout-")
    os.chmod(tmp, 0o755)
    try:
        inv = os.path.join(tmp, "hosts.ini")
        inventory(inv, args)
        n = args.hosts
        env = dict(os.environ)
        rows = []

        def count(word):
            return lambda p: None if p.returncode == 0 and p.stdout.count(word) == n else \
                "exit %d, %d of %d hosts %s" % (p.returncode, p.stdout.count(word), n, word)

        def script_ok(p):
            if p.returncode != 0:
                return "exit %d" % p.returncode
            out = json.loads(p.stdout.strip().splitlines()[-1])
            return None if out["ok"] == n else "%d of %d hosts ok" % (out["ok"], n)

        sides = [
            ("fanout_exec_%d" % n, [args.mitostar, "exec", "-i", inv, "--progress", "never", "--forks", str(n), "all", "--", "uname", "-r"],
             env, count("| OK |")),
            ("fanout_script_%d" % n, [args.mitostar, "-i", inv, "--progress", "never", "--forks", str(n), "bench/fanout.star"], env, script_ok),
        ]
        if shutil.which("ansible"):
            remote = os.path.join(tmp, "remote")
            os.mkdir(remote)
            os.chmod(remote, 0o1777)
            cfg = os.path.join(tmp, "ansible.cfg")
            open(cfg, "w").close()
            aenv = dict(env, ANSIBLE_CONFIG=cfg, ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_LOCAL_TEMP=os.path.join(tmp, "local"),
                        ANSIBLE_REMOTE_TEMP=remote, ANSIBLE_NOCOLOR="1")
            argv = ["ansible", "all", "-i", inv, "-f", str(n), "-m", "command", "-a", "uname -r"]
            sides.append(("ansible_%d" % n, argv, aenv, count("| CHANGED |")))
            if os.path.isdir(MITOGEN_STRATEGY):
                menv = dict(aenv, ANSIBLE_STRATEGY_PLUGINS=MITOGEN_STRATEGY, ANSIBLE_STRATEGY="mitogen_linear")
                sides.append(("ansible_mitogen_%d" % n, argv, menv, count("| CHANGED |")))
            else:
                print("fanout: ansible-mitogen is not installed: no Ansible + Mitogen row", file=sys.stderr)
        else:
            print("fanout: Ansible is not installed (apt-get install ansible-core ansible-mitogen): no Ansible rows", file=sys.stderr)
        for metric, argv, e, check in sides:
            run(argv, e, check)  # warm-up: mitostar ships its binary, Ansible its modules' caches
            times, rss = [], []
            for _ in range(args.reps):
                elapsed, out = run(argv, e, check)
                times.append(elapsed * 1000)
                if metric.startswith("fanout_script"):
                    rss.append(json.loads(out.strip().splitlines()[-1])["rss_kib"] / 1024)
            rows.append(row(metric, times, "ms"))
            if rss:
                rows.append(row("rss_master_fanout_%d" % n, rss, "MiB"))
            print("fanout: %s %.0f ms" % (metric, statistics.median(times)), file=sys.stderr)
        with open(args.out, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def table(path):
    rows = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                rows[r["metric"]] = r
    n = next((m.rsplit("_", 1)[1] for m in rows if m.startswith("fanout_exec_")), None)
    if n is None:
        sys.exit("fanout: %s has no rows" % path)

    def cell(m):
        r = rows.get(m)
        return "-" if r is None else "%.0f (p99 %.0f, n=%d)" % (r["median"], r["p99"], r["n"])

    def speedup(slow, fast):
        a, b = rows.get(slow), rows.get(fast)
        return "-" if a is None or b is None else "%.1f×" % (a["median"] / b["median"])

    print()
    print("| %s hosts: connect + `uname -r` (ms, lower is better) | mitostar exec | mitostar connect/each | Ansible | Ansible + Mitogen |" % n)
    print("|---|---|---|---|---|")
    print("| wall time | %s | %s | %s | %s |" % (cell("fanout_exec_" + n), cell("fanout_script_" + n), cell("ansible_" + n), cell("ansible_mitogen_" + n)))
    print("| Ansible / this | %s | %s | 1.0× | - |" % (speedup("ansible_" + n, "fanout_exec_" + n), speedup("ansible_" + n, "fanout_script_" + n)))
    print("| Ansible + Mitogen / this | %s | %s | - | 1.0× |" % (speedup("ansible_mitogen_" + n, "fanout_exec_" + n), speedup("ansible_mitogen_" + n, "fanout_script_" + n)))
    r = rows.get("rss_master_fanout_" + n)
    if r:
        print()
        print("Master memory with %s hosts connected (VmRSS): %.1f MiB (p99 %.1f, n=%d)." % (n, r["median"], r["p99"], r["n"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mitostar")
    ap.add_argument("--out")
    ap.add_argument("--ssh")
    ap.add_argument("--ssh-key")
    ap.add_argument("--ssh-known-hosts")
    ap.add_argument("--local", action="store_true")
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--table")
    args = ap.parse_args()
    if args.table:
        table(args.table)
        return
    if not args.mitostar or not args.out or not (args.local or args.ssh):
        sys.exit(__doc__)
    measure(args)


if __name__ == "__main__":
    main()
