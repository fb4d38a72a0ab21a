"""Issue 15's targets for scripts/bench.py (standard library only): the
request/response, connections/s and bulk rows against smoltcp and the
kernel, and the `busypoll` contender (tapstack with `--busy-poll`, which is
off by default and so measured separately). The idle-connections row's
targets are bench_idle.py's. `ratio_verdicts` checks issue 5's ratio
targets too."""

from bench_contenders import BUSY_POLL_US

# (row, contender, least ratio tapstack/contender)
TARGETS = [
    ("tcp_rr_same_cpu", "smoltcp", 1.3),
    ("tcp_rr_same_cpu", "kernel", 0.7),
    ("tcp_rr_unpinned", "smoltcp", 1.1),
    ("tcp_cps", "kernel", 1.2),
    ("tcp_cps", "smoltcp", 2.0),
    ("tcp_bulk_to_stack_gbit", "kernel", 1.0),
    ("tcp_bulk_from_stack_gbit", "kernel", 1.0),
]

# (row, most server context switches per operation). The issue sets the
# bound beside its one-CPU row; it is held to unpinned too, as stricter.
SWITCH_TARGETS = [
    ("tcp_rr_same_cpu", 1.2),
    ("tcp_rr_unpinned", 1.2),
]


def server_switches(row, key):
    sw = (row.get("switches") or {}).get(key)
    return sw and sw["server_per_op"]


def ratio(row, a, b):
    """a/b for a row where higher is better (all of issue 15's rows)."""
    if row.get(a) is None or not row.get(b):
        return None
    return row[a] / row[b]


def ratio_verdicts(by_key, targets, issue, verdicts, row_filter, only_filter):
    """PASS/FAIL lines for `targets` (row, contender, least ratio
    tapstack/contender: the row's `tapstack_vs_*` column) among the rows
    and contenders measured; adds the verdicts."""
    lines = []
    for key, other, least in targets:
        if not row_filter.search(key) or not only_filter.search(other):
            continue
        r = by_key.get(key)
        got = r and r["tapstack_vs_" + other]
        verdict = "FAIL" if got is None or got < least else "PASS"
        verdicts.append({"metric": key, "vs": other, "target": least, "ratio": got,
                         "verdict": verdict, "issue": issue})
        lines.append("  %-4s  %-28s >= %.1fx %-8s measured %s" % (
            verdict, key, least, other, "- (not measured)" if got is None else "%.2fx" % got))
    return lines


def report(by_key, verdicts, row_filter, only_filter):
    """Prints PASS/FAIL per target of the rows that were measured, then the
    busy-polling contender's figures (informational: no target); adds the
    verdicts."""
    lines = ratio_verdicts(by_key, TARGETS, 15, verdicts, row_filter, only_filter)
    for key, most in SWITCH_TARGETS:
        r = by_key.get(key)
        if not r or not row_filter.search(key) or not only_filter.search("tapstack"):
            continue
        got = server_switches(r, "tapstack")
        verdict = "PASS" if got is not None and got <= most else "FAIL"
        verdicts.append({"metric": key + "_server_switches", "vs": "target", "target": most,
                         "ratio": got, "verdict": verdict, "issue": 15})
        lines.append("  %-4s  %-28s server context switches per round trip %s <= %.1f"
                     % (verdict, key, "-" if got is None else "%.2f" % got, most))
    busy = []
    for key in ("tcp_rr_same_cpu", "tcp_rr_unpinned", "tcp_cps"):
        r = by_key.get(key)
        if not r or r.get("busypoll") is None:
            continue
        parts = ["%s/%s %s" % ("busypoll", other, "-" if got is None else "%.2fx" % got)
                 for other in ("tapstack", "smoltcp", "kernel")
                 for got in [ratio(r, "busypoll", other)]]
        sw = server_switches(r, "busypoll")
        busy.append("  info  %-28s %s; server switches per %s %s" % (
            key, ", ".join(parts), r["switches_per"].rstrip("s").replace("_", " "),
            "-" if sw is None else "%.2f" % sw))
    if not lines and not busy:
        return
    print("\nIssue 15 targets (tapstack / baseline, same run, same placement):")
    print("\n".join(lines))
    if busy:
        print("  `--busy-poll %d` (off by default; the busypoll contender, measured "
              "separately, no target):" % BUSY_POLL_US)
        print("\n".join(busy))
