#!/usr/bin/python3
"""mitogen_bench.py: the side-by-side workloads, run by Python Mitogen.

    /usr/bin/python3 bench/mitogen_bench.py [--first-call-reps N] [--rtt N]
        [--pipelined 1000,10000] [--pipelined-reps N] [--two-hop N]
        [--children N] [--children-reps N] [--bulk-mib N] [--bulk-reps N]
        [--put-mib N] [--put-reps N] [--tree-files N] [--tree-big-mib N]
        [--rsync-reps N] [--data-dir DIR] [--step-timeout SECONDS]
        [--only PREFIX,...] [--child-cpu CPUS]
        [--ssh USER@HOST:PORT --ssh-key FILE --ssh-known-hosts FILE --ssh-reps N]

bench/bench.star does the same work with mitostar: the same remote functions
(noop, blob, size), sizes, counts and metric names. One JSON line per metric:
{"metric", "value", "unit", "n", "median", "p99"}. Needs Debian's
python3-mitogen (run with /usr/bin/python3), and the repository root as the
working directory (the file workloads make their data with bench/mkdata.sh).
bench/README.md describes each workload; bench/run.sh runs all three sides.

Each workload runs in a process of its own (this script with --workload
NAME) that is killed, with everything it started, after --step-timeout
seconds: Mitogen can hang for ever (shutdown(wait=True) on a context that
is already gone), and a hung workload must cost its rows, not the run.
A workload that fails or is killed prints why on stderr and leaves its rows
out, so the table shows "-"; the script then exits 1, except for the
fakessh rows, whose failure is expected (Mitogen's fakessh does not work
in this release; bench/README.md).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import mitogen.fakessh
import mitogen.master
import mitogen.select
import mitogen.service
import mitogen.utils

# ---- the remote functions (identical bodies in bench.star) ----


def noop():
    return None


def blob(n):
    return b"x" * n


def size(data):
    return len(data)


# ---- the remote helpers of the file workloads (bench.star calls fs.* for these) ----


def make_scratch(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def remove_file(path):
    if os.path.exists(path):
        os.unlink(path)


def remove_tree(path):
    shutil.rmtree(path)


def file_size(path):
    return os.stat(path).st_size


def fetch_file(parent, path, dst):
    """The target's side of a put: streams path from the FileService in
    parent into dst as fs.put writes it (a temporary file renamed into
    place, with the source's mode and mtime). Mitogen's own way to push a
    file, as ansible_mitogen's transfer_file does it."""
    tmp = "%s.tmp.%d" % (dst, os.getpid())
    with open(tmp, "wb") as fp:
        ok, meta = mitogen.service.FileService.get(parent, path, fp)
    if not ok:
        os.unlink(tmp)
        raise RuntimeError("FileService.get(%r): transfer incomplete" % (path,))
    os.chmod(tmp, meta["mode"] & 0o7777)
    os.utime(tmp, (meta["atime"], meta["mtime"]))
    os.rename(tmp, dst)
    return meta["size"]


# ---- configuration ----

DEFAULTS = {
    "first_call_reps": 20,
    "rtt": 5000,
    "pipelined": "1000,10000",
    "pipelined_reps": 20,
    "two_hop": 2000,
    "children": 100,
    "children_reps": 2,
    "bulk_mib": 64,
    "bulk_reps": 5,
    "put_mib": 256,
    "put_reps": 3,
    "tree_files": 500,
    "tree_big_mib": 64,
    "rsync_reps": 3,
    "data_dir": "bench/out/data",
    "step_timeout": 900,
    "workload": "",
    "only": "",
    "child_cpu": "",
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
    if cfg["child_cpu"]:
        # The child on those CPUs (run.sh pins this process elsewhere).
        c = router.local(python_path=["taskset", "-c", cfg["child_cpu"], sys.executable])
    else:
        c = router.local()
    round_trips(c, min(100, cfg["rtt"]))  # warm up
    emit("call_rtt", "us", round_trips(c, cfg["rtt"]))
    round_trips(c, cfg["rtt"])  # as bench.star: the steady state
    emit("call_rtt_steady", "us", round_trips(c, cfg["rtt"]))
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


# ---- file transfer: FileService and fakessh ----

# Every fakessh.run here gives up after this many seconds (as in bench.star).
RSYNC_DEADLINE = 900


def data_paths(cfg):
    """The source file and tree, made by bench/mkdata.sh when missing."""
    if not os.path.exists("bench/mkdata.sh"):
        raise RuntimeError("bench/mkdata.sh not found in %s: run from the repository root" % os.getcwd())
    d = os.path.abspath(cfg["data_dir"])
    subprocess.run(["sh", "bench/mkdata.sh", d, str(cfg["put_mib"]), str(cfg["tree_files"]),
                    str(cfg["tree_big_mib"])], timeout=600, check=True)
    return (os.path.join(d, "file-%dm" % cfg["put_mib"]),
            os.path.join(d, "tree-%d-%dm" % (cfg["tree_files"], cfg["tree_big_mib"])))


def scratch_dir(c):
    d = "/tmp/mitostar-bench-mitogen-%d-%d" % (os.getpid(), c.context_id)
    c.call(make_scratch, d)
    return d


def put_rows(router, cfg, c, metric):
    """A put of the --put-mib file into c through FileService, --put-reps
    timed times after one untimed one, in MiB/s (as bench.star)."""
    src, _ = data_paths(cfg)
    nbytes = cfg["put_mib"] * 1024 * 1024
    pool = mitogen.service.get_or_create_pool(router=router)
    pool.get_service("mitogen.service.FileService").register(src)
    root = scratch_dir(c)
    dst = root + "/put"
    samples = []
    try:
        for rep in range(cfg["put_reps"] + 1):
            c.call(remove_file, dst)
            t0 = time.perf_counter()
            c.call(fetch_file, router.myself(), src, dst)
            if rep > 0:  # rep 0 warms the page cache and the connection up
                samples.append(cfg["put_mib"] / elapsed(t0, "s"))
            got = c.call(file_size, dst)
            if got != nbytes:
                raise RuntimeError("%s: %s has %d bytes, want %d" % (metric, dst, got, nbytes))
    finally:
        c.call(remove_tree, root)
    emit(metric, "MiB/s", samples, higher_is_better=True)


def rsync_rows(router, cfg, c, metric):
    """rsync -a of the tree into c through mitogen.fakessh: --rsync-reps
    timed fresh copies after one untimed one, in ms (as bench.star)."""
    _, tree = data_paths(cfg)
    big = cfg["tree_big_mib"] * 1024 * 1024
    root = scratch_dir(c)
    samples = []
    try:
        for rep in range(cfg["rsync_reps"] + 1):
            dst = root + "/rsync%d" % rep
            t0 = time.perf_counter()
            status = mitogen.fakessh.run(c, router, ["rsync", "-a", tree + "/", "h:" + dst + "/"],
                                         deadline=time.time() + RSYNC_DEADLINE)
            if rep > 0:
                samples.append(elapsed(t0, "ms"))
            if status != 0:
                raise RuntimeError("%s: rsync through fakessh exited with status %r" % (metric, status))
            got = c.call(file_size, dst + "/big.bin")
            if got != big:
                raise RuntimeError("%s: %s/big.bin has %d bytes, want %d" % (metric, dst, got, big))
            c.call(remove_tree, dst)
    finally:
        c.call(remove_tree, root)
    emit(metric, "ms", samples)


def bench_put_local(router, cfg):
    c = router.local()
    put_rows(router, cfg, c, "fs_put_local_%dm" % cfg["put_mib"])
    c.shutdown(wait=True)


def bench_rsync_local(router, cfg):
    c = router.local()
    rsync_rows(router, cfg, c, "fakessh_rsync_local")
    c.shutdown(wait=True)


def bench_put_ssh(router, cfg):
    c = router.ssh(**ssh_target(cfg))
    put_rows(router, cfg, c, "fs_put_ssh_%dm" % cfg["put_mib"])
    c.shutdown(wait=True)


def bench_rsync_ssh(router, cfg):
    c = router.ssh(**ssh_target(cfg))
    rsync_rows(router, cfg, c, "fakessh_rsync_ssh")
    c.shutdown(wait=True)


# ---- ssh ----

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
    ("fs_put_local", bench_put_local),
    ("fakessh_rsync_local", bench_rsync_local),
    ("ssh", bench_ssh),
    ("fs_put_ssh", bench_put_ssh),
    ("fakessh_rsync_ssh", bench_rsync_ssh),
]

# The workloads that need --ssh.
SSH_WORKLOADS = ["ssh", "fs_put_ssh", "fakessh_rsync_ssh"]

# The workloads whose failure is expected: Mitogen 0.3's fakessh.run still
# builds its stream with the 0.2 API ("TypeError: Stream() takes no
# arguments"); its own test is skipped upstream.
MAY_FAIL = ["fakessh_rsync_local", "fakessh_rsync_ssh"]


def run_workload(router, cfg):
    """Runs the one workload named by --workload, in this process."""
    fn = dict(WORKLOADS).get(cfg["workload"])
    if fn is None:
        sys.exit("mitogen_bench.py: unknown workload %r" % cfg["workload"])
    if cfg["workload"] not in MAY_FAIL:
        fn(router, cfg)
        return
    try:
        fn(router, cfg)
    except Exception as e:  # the expected failure: one line, not a traceback
        sys.exit("mitogen_bench.py: %s: %s: %s" % (cfg["workload"], type(e).__name__, e))


def run_isolated(name, cfg):
    """Runs workload name in a child process and session of its own, with
    this script's arguments, killing it and everything it started after
    --step-timeout seconds. Its rows go straight to our stdout. Returns
    None or why it failed."""
    argv = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:] + ["--workload", name]
    proc = subprocess.Popen(argv, start_new_session=True)
    try:
        rc = proc.wait(timeout=cfg["step_timeout"])
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "no end within %d s (--step-timeout): killed" % cfg["step_timeout"]
    finally:
        # Whatever the workload left behind in its session (an ssh, a
        # child context that lost its parent) goes with it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if rc != 0:
        return "exit status %d" % rc
    return None


def main():
    cfg = parse_args(sys.argv[1:])
    if cfg["workload"]:
        mitogen.utils.run_with_router(run_workload, cfg)
        return
    failed = False
    for name, _ in WORKLOADS:
        if name in SSH_WORKLOADS and not cfg["ssh"]:
            continue
        if not (wants(cfg, name) or (name == "children" and wants(cfg, "rss"))):
            continue
        why = run_isolated(name, cfg)
        if why is None:
            continue
        if name in MAY_FAIL:
            print("mitogen_bench.py: %s: %s; no rows (expected: Mitogen's fakessh does not work in "
                  "this release, see bench/README.md)" % (name, why), file=sys.stderr)
        else:
            print("mitogen_bench.py: %s: %s; no rows" % (name, why), file=sys.stderr)
            failed = True
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
