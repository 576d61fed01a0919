#!/usr/bin/python3
"""mitogen_bench.py: the side-by-side workloads, run by Python Mitogen.

    /usr/bin/python3 bench/mitogen_bench.py [--first-call-reps N] [--rtt N]
        [--pipelined 1000,10000] [--pipelined-reps N] [--two-hop N]
        [--children N] [--children-reps N] [--bulk-mib N] [--bulk-reps N]
        [--only PREFIX,...]
        [--ssh USER@HOST:PORT --ssh-key FILE --ssh-known-hosts FILE --ssh-reps N]

bench/bench.star does the same work with mitostar: the same remote functions
(noop, blob, size), sizes, counts and metric names. One JSON line per metric:
{"metric", "value", "unit", "n", "median", "p99"}. Needs Debian's
python3-mitogen (run with /usr/bin/python3). bench/README.md describes each
workload; bench/run.sh runs all three sides.
"""

import json
import os
import sys
import time

import mitogen.master
import mitogen.select
import mitogen.utils

# ---- the remote functions (identical bodies in bench.star) ----


def noop():
    return None


def blob(n):
    return b"x" * n


def size(data):
    return len(data)


# ---- configuration ----

DEFAULTS = {
    "first_call_reps": 20,
    "rtt": 5000,
    "pipelined": "1000,10000",
    "pipelined_reps": 5,
    "two_hop": 2000,
    "children": 100,
    "children_reps": 2,
    "bulk_mib": 64,
    "bulk_reps": 3,
    "only": "",
    "ssh": "",
    "ssh_key": "",
    "ssh_known_hosts": "",
    "ssh_reps": 5,
}


def parse_args(args):
    cfg = dict(DEFAULTS)
    i = 0
    while i < len(args):
        a = args[i]
        key = a[2:].replace("-", "_")
        if not a.startswith("--") or key not in cfg:
            sys.exit("mitogen_bench.py: unknown argument %r (known: %s)"
                     % (a, ", ".join("--" + k.replace("_", "-") for k in cfg)))
        if i + 1 >= len(args):
            sys.exit("mitogen_bench.py: %s needs a value" % a)
        v = args[i + 1]
        if type(cfg[key]) == int:
            v = int(v)
            if v < 1:
                sys.exit("mitogen_bench.py: %s must be at least 1, got %d" % (a, v))
        cfg[key] = v
        i += 2
    return cfg


def wants(cfg, name):
    if not cfg["only"]:
        return True
    for p in cfg["only"].split(","):
        if name.startswith(p.strip()):
            return True
    return False


# ---- reporting (the same rules as floor/main.go and bench.star) ----

def percentiles(v, higher_is_better):
    s = sorted(v)
    n = len(s)
    rank = (99 * n + 99) // 100  # ceil(0.99 n), 1-based nearest rank
    median = s[n // 2]
    if higher_is_better:
        return median, s[n - rank]  # the slow tail of a rate
    return median, s[rank - 1]


def emit(metric, unit, samples, higher_is_better=False):
    median, p99 = percentiles(samples, higher_is_better)
    print(json.dumps({"metric": metric, "value": median, "unit": unit, "n": len(samples),
                      "median": median, "p99": p99}, sort_keys=True), flush=True)


def elapsed(t0, unit):
    return (time.perf_counter() - t0) * {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]


def vm_rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line[len("VmRSS:"):].strip().removesuffix(" kB")) / 1024.0
    raise RuntimeError("/proc/%d/status has no VmRSS" % pid)


# ---- the workloads ----

def bench_first_call(router, cfg):
    samples = []
    for _ in range(cfg["first_call_reps"]):
        t0 = time.perf_counter()
        c = router.local()
        c.call(noop)
        samples.append(elapsed(t0, "ms"))
        c.shutdown(wait=True)
    emit("local_first_call", "ms", samples)


def round_trips(c, n):
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.call(noop)
        samples.append(elapsed(t0, "us"))
    return samples


def bench_rtt(router, cfg):
    c = router.local()
    round_trips(c, min(100, cfg["rtt"]))  # warm up
    emit("call_rtt", "us", round_trips(c, cfg["rtt"]))
    c.shutdown(wait=True)


def bench_pipelined(router, cfg):
    c = router.local()
    c.call(noop)
    for n in [int(s) for s in cfg["pipelined"].split(",")]:
        samples = []
        for _ in range(cfg["pipelined_reps"]):
            t0 = time.perf_counter()
            results = mitogen.select.Select.all([c.call_async(noop) for _ in range(n)])
            samples.append(n / elapsed(t0, "s"))
            if len(results) != n:
                raise RuntimeError("pipelined: %d results for %d calls" % (len(results), n))
        emit("pipelined_%d" % n, "calls/s", samples, higher_is_better=True)
    c.shutdown(wait=True)


def bench_two_hop(router, cfg):
    c1 = router.local()
    c2 = router.local(via=c1)
    round_trips(c2, min(100, cfg["two_hop"]))
    emit("two_hop_rtt", "us", round_trips(c2, cfg["two_hop"]))
    c2.shutdown(wait=True)
    c1.shutdown(wait=True)


def bench_children(router, cfg):
    n = cfg["children"]
    starts, calls = [], []
    child_rss, master_rss = [], []
    for rep in range(cfg["children_reps"]):
        t0 = time.perf_counter()
        kids = [router.local() for _ in range(n)]
        starts.append(elapsed(t0, "ms"))
        t0 = time.perf_counter()
        pids = mitogen.select.Select.all([k.call_async(os.getpid) for k in kids])
        calls.append(elapsed(t0, "ms"))
        if rep == cfg["children_reps"] - 1:
            child_rss = [vm_rss_mib(pid) for pid in pids]
            master_rss = [vm_rss_mib(os.getpid())]
        # Mitogen's shutdown(wait=True) listens for 'disconnect' only after
        # sending, so on a context already gone it waits forever: wait on
        # the latches the first shutdown() calls return instead.
        latches = [k.shutdown() for k in kids]
        for latch in latches:
            latch.get(timeout=30)
    emit("children_%d_start" % n, "ms", starts)
    emit("children_%d_call" % n, "ms", calls)
    emit("rss_child_idle", "MiB", child_rss)
    emit("rss_master_children_%d" % n, "MiB", master_rss)


def bench_bulk(router, cfg):
    nbytes = cfg["bulk_mib"] * 1024 * 1024
    c = router.local()
    c.call(noop)
    results, args = [], []
    data = blob(nbytes)
    for _ in range(cfg["bulk_reps"]):
        t0 = time.perf_counter()
        got = c.call(blob, nbytes)
        results.append(cfg["bulk_mib"] / elapsed(t0, "s"))
        if len(got) != nbytes:
            raise RuntimeError("bulk: got %d bytes, want %d" % (len(got), nbytes))
        got = None
        t0 = time.perf_counter()
        n = c.call(size, data)
        args.append(cfg["bulk_mib"] / elapsed(t0, "s"))
        if n != nbytes:
            raise RuntimeError("bulk: child got %d bytes, want %d" % (n, nbytes))
    emit("bulk_result_%dm" % cfg["bulk_mib"], "MiB/s", results, higher_is_better=True)
    emit("bulk_arg_%dm" % cfg["bulk_mib"], "MiB/s", args, higher_is_better=True)
    c.shutdown(wait=True)


def ssh_target(cfg):
    target = cfg["ssh"]
    user = None
    if "@" in target:
        user, target = target.rsplit("@", 1)
    port = 22
    if ":" in target:
        target, p = target.rsplit(":", 1)
        port = int(p)
    ssh_args = []
    if cfg["ssh_known_hosts"]:
        ssh_args = ["-o", "UserKnownHostsFile=" + cfg["ssh_known_hosts"]]
    kwargs = {"hostname": target, "username": user, "port": port, "check_host_keys": "enforce",
              "ssh_args": ssh_args, "compression": False}
    if cfg["ssh_key"]:
        kwargs["identity_file"] = cfg["ssh_key"]
    return kwargs


def bench_ssh(router, cfg):
    kwargs = ssh_target(cfg)
    # One connection first, as bench.star does (mitostar caches its binary
    # on the target; Mitogen has no cache, so this only warms the disk).
    c = router.ssh(**kwargs)
    c.call(noop)
    c.shutdown(wait=True)
    samples = []
    for _ in range(cfg["ssh_reps"]):
        t0 = time.perf_counter()
        c = router.ssh(**kwargs)
        c.call(noop)
        samples.append(elapsed(t0, "ms"))
        c.shutdown(wait=True)
    emit("ssh_connect_first_call", "ms", samples)

    c = router.ssh(**kwargs)
    n = min(cfg["rtt"], 2000)
    round_trips(c, min(100, n))
    emit("ssh_rtt", "us", round_trips(c, n))
    nbytes = cfg["bulk_mib"] * 1024 * 1024
    data = blob(nbytes)
    samples = []
    for _ in range(cfg["bulk_reps"]):
        t0 = time.perf_counter()
        got = c.call(size, data)
        samples.append(cfg["bulk_mib"] / elapsed(t0, "s"))
        if got != nbytes:
            raise RuntimeError("ssh bulk: target got %d bytes, want %d" % (got, nbytes))
    emit("ssh_bulk_%dm" % cfg["bulk_mib"], "MiB/s", samples, higher_is_better=True)
    c.shutdown(wait=True)


WORKLOADS = [
    ("local_first_call", bench_first_call),
    ("call_rtt", bench_rtt),
    ("pipelined", bench_pipelined),
    ("two_hop_rtt", bench_two_hop),
    ("children", bench_children),
    ("bulk", bench_bulk),
    ("ssh", bench_ssh),
]


def main(router):
    cfg = parse_args(sys.argv[1:])
    for name, fn in WORKLOADS:
        if name == "ssh" and not cfg["ssh"]:
            continue
        if wants(cfg, name) or (name == "children" and wants(cfg, "rss")):
            fn(router, cfg)


if __name__ == "__main__":
    mitogen.utils.run_with_router(main)
