"""Print the side-by-side benchmark table from three JSON-lines files.

    python3 bench/table.py mitostar.jsonl mitogen.jsonl floor.jsonl

Each line is {"metric", "value", "unit", "n", "median", "p99"}. Ratios are
mitostar / other on the median: for ms, us and MiB (time, memory) lower is
better; for calls/s and MiB/s higher is better. Exits 1 when the mitostar
file has no rows or a line does not parse, so a broken harness fails loudly.
"""
import json
import sys


def load(path):
    rows = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
                rows[r["metric"]] = r
            except (ValueError, KeyError) as e:
                sys.exit("table: %s:%d: bad row %r: %s" % (path, n, line, e))
    return rows


def fmt(r):
    if r is None:
        return "-"
    v, p99 = r["median"], r["p99"]
    digits = 1 if abs(v) >= 10 else 3
    return "%.*f (p99 %.*f, n=%d)" % (digits, v, digits, p99, r["n"])


def ratio(a, b):
    if a is None or b is None or not b["median"]:
        return "-"
    return "%.2f" % (a["median"] / b["median"])


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    ms, mg, fl = (load(p) for p in argv[1:])
    if not ms:
        sys.exit("table: %s has no rows: the mitostar side failed" % argv[1])
    better = {"calls/s": "higher", "MiB/s": "higher"}
    print("| metric | unit | mitostar | Python Mitogen | floor | mitostar/Mitogen | mitostar/floor |")
    print("|---|---|---|---|---|---|---|")
    for metric in ms:
        r = ms[metric]
        unit = "%s (%s is better)" % (r["unit"], better.get(r["unit"], "lower"))
        print("| %s | %s | %s | %s | %s | %s | %s |" % (
            metric, unit, fmt(r), fmt(mg.get(metric)), fmt(fl.get(metric)),
            ratio(r, mg.get(metric)), ratio(r, fl.get(metric))))


if __name__ == "__main__":
    main(sys.argv)
