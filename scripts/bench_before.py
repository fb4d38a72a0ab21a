"""The before contender's helpers for scripts/bench.py (issue 12: the
benchmark must not get slower, same run, before and after): which flags an
older tapstack binary knows, and the tapstack/before verdict per row.
"""
import re
import statistics
import subprocess


def help_flags(binary):
    """{--flag: takes a value} from `BINARY --help` and `BINARY echo --help`
    (clap prints a flag that takes a value as `--flag <VALUE>`)."""
    flags = {}
    for sub in ([], ["echo"]):
        out = subprocess.run([binary] + sub + ["--help"], capture_output=True, text=True,
                             timeout=20)
        for flag, value in re.findall(r"(--[a-z][a-z0-9-]*)( <)?", out.stdout):
            flags[flag] = flags.get(flag, False) or bool(value)
    return flags


def drop_unknown(argv, known, takes_value):
    """argv without the --flags not in known (and the value after each one
    that takes_value says takes one). Returns (argv, the flags left out)."""
    out, dropped, skip = [], [], False
    for a in argv:
        if skip:
            skip = False
        elif a.startswith("--") and a not in known:
            dropped.append(a)
            skip = takes_value.get(a, False)
        else:
            out.append(a)
    return out, dropped


def before_report(rows):
    """Issue 12: the benchmark must not get slower (same run, before and
    after, every row within noise). tapstack/before per row against the
    noise of the runs: the larger relative spread (max - min) / median of
    the two contenders' runs. Informational (no exit status): a few runs
    on a shared machine decide nothing alone. Returns the verdicts."""
    print("\nIssue 12, tapstack / before (same run, > 1 is better; noise = the larger "
          "(max-min)/median of the two contenders' runs):")
    out = []
    for r in rows:
        got = r.get("tapstack_vs_before")
        spreads = []
        for k in ("tapstack", "before"):
            values = (r.get(k + "_detail") or {}).get("values") or []
            if len(values) > 1 and statistics.median(values):
                spreads.append((max(values) - min(values)) / statistics.median(values))
        noise = max(spreads) if len(spreads) == 2 else None
        if got is None:
            verdict = "not measured"
        elif noise is None:
            verdict = "one run: no noise figure"
        elif got < 1 - noise:
            verdict = "SLOWER"
        elif got > 1 + noise:
            verdict = "faster"
        else:
            verdict = "within noise"
        print("  %-28s %-6s noise %-6s %s" % (
            r["metric"], "-" if got is None else "%.2fx" % got,
            "-" if noise is None else "%.0f%%" % (100 * noise), verdict))
        out.append({"metric": r["metric"], "vs": "before", "target": None, "ratio": got,
                    "noise": noise, "verdict": verdict, "issue": 12})
    return out
