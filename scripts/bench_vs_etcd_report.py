#!/usr/bin/env python3
"""Turns the raw results of scripts/bench-vs-etcd into the report: bench-vs-etcd.md with a table
per load (median over repeats, etcd vs detcd and their ratio), the targets stated as met or
missed, and two SVG plots. Python standard library only.

Usage: bench_vs_etcd_report.py RESULTS.jsonl MACHINE.txt COMMANDS.txt OUT_DIR [--smoke]

RESULTS.jsonl has one object per line, written by scripts/bench-vs-etcd:
  {"server": "etcd"|"detcd", "repeat": N, "load": "put"|"range-l"|"range-s"|"rss-puts",
   "clients": N, "summary": <detcd-bench --output json>}
  {"server": ..., "repeat": N, "load": "rss", "puts": N, "rss_kb": [m1, m2, m3]}
"""

import json
import math
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

SERVERS = ("etcd", "detcd")
COLORS = {"etcd": "#4e79a7", "detcd": "#f28e2b"}
# The load the throughput and latency targets are stated for.
TARGET_CLIENTS = 100
THROUGHPUT_FACTOR = 2.0
RSS_FACTOR = 0.5

MD = "bench-vs-etcd.md"
THROUGHPUT_SVG = "bench-vs-etcd-throughput.svg"
LATENCY_SVG = "bench-vs-etcd-latency.svg"


def load_results(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"{path}:{number}: not JSON: {e}")
    return rows


class Results:
    """Median over repeats of every metric, per (server, load, clients)."""

    def __init__(self, rows):
        self.rows = rows
        self.repeats = len({r["repeat"] for r in rows}) or 0

    def summaries(self, server, load, clients=None):
        return [
            r["summary"]
            for r in self.rows
            if r["server"] == server and r["load"] == load and (clients is None or r["clients"] == clients)
        ]

    def median(self, server, load, field, clients=None):
        values = [s[field] for s in self.summaries(server, load, clients) if s.get(field) is not None]
        return statistics.median(values) if values else None

    def spread(self, server, load, field, clients=None):
        values = [s[field] for s in self.summaries(server, load, clients) if s.get(field) is not None]
        return (min(values), max(values)) if values else None

    def errors(self, server, load, clients=None):
        return sum(s.get("errors", 0) for s in self.summaries(server, load, clients))

    def clients(self, load):
        return sorted({r["clients"] for r in self.rows if r["load"] == load})

    def rss(self, server):
        """Median per member of the resident set after the RSS puts, in kB; and the puts."""
        runs = [r for r in self.rows if r["server"] == server and r["load"] == "rss"]
        if not runs:
            return None, None
        members = len(runs[0]["rss_kb"])
        per_member = [statistics.median(r["rss_kb"][i] for r in runs) for i in range(members)]
        return per_member, runs[0]["puts"]


def ratio(detcd, etcd):
    if detcd is None or etcd is None or etcd == 0:
        return None
    return detcd / etcd


def fmt(value, digits=1):
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def fmt_ratio(value):
    return "—" if value is None else f"{value:.2f}x"


def fmt_mib(kb):
    return "—" if kb is None else f"{kb / 1024:,.1f} MiB"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def errors_note(results, load, clients=None):
    counts = {s: results.errors(s, load, clients) for s in SERVERS}
    if any(counts.values()):
        return f"\nFailed requests (all repeats): etcd {counts['etcd']}, detcd {counts['detcd']}.\n"
    return ""


# ---------------------------------------------------------------------------------------------
# Targets


def targets(results):
    """(target, etcd, detcd, ratio, verdict) rows."""
    rows = []

    def verdict(ok, failed):
        if ok is None:
            return "not measured"
        note = f" ({failed} failed requests)" if failed else ""
        return ("**met**" if ok else "**missed**") + note

    def throughput_row(load, c, name):
        """The throughput target of `load` with `c` clients; answers its failed requests."""
        e_qps, d_qps = (results.median(s, load, "qps", c) for s in SERVERS)
        failed = sum(results.errors(s, load, c) for s in SERVERS)
        r = ratio(d_qps, e_qps)
        ok = None if r is None else r >= THROUGHPUT_FACTOR
        rows.append((f"{name}, {c} clients: throughput >= {THROUGHPUT_FACTOR:g}x etcd",
                     f"{fmt(e_qps)} req/s", f"{fmt(d_qps)} req/s", fmt_ratio(r), verdict(ok, failed)))
        return failed

    load, c = "put", TARGET_CLIENTS
    failed = throughput_row(load, c, "puts")
    e_p99, d_p99 = (results.median(s, load, "p99_ms", c) for s in SERVERS)
    r = ratio(d_p99, e_p99)
    ok = None if r is None else d_p99 <= e_p99
    rows.append((f"puts, {c} clients: p99 no worse than etcd",
                 f"{fmt(e_p99, 3)} ms", f"{fmt(d_p99, 3)} ms", fmt_ratio(r), verdict(ok, failed)))

    e_p50, d_p50 = (results.median(s, "put", "p50_ms", 1) for s in SERVERS)
    failed = sum(results.errors(s, "put", 1) for s in SERVERS)
    r = ratio(d_p50, e_p50)
    ok = None if r is None else d_p50 <= e_p50
    rows.append(("puts, 1 client: p50 no worse than etcd",
                 f"{fmt(e_p50, 3)} ms", f"{fmt(d_p50, 3)} ms", fmt_ratio(r), verdict(ok, failed)))

    for load, name in (("range-l", "linearizable"), ("range-s", "serializable")):
        c = results.clients(load)[0] if results.clients(load) else None
        throughput_row(load, c, f"{name} ranges")

    (e_rss, puts), (d_rss, _) = results.rss("etcd"), results.rss("detcd")
    e_max = max(e_rss) if e_rss else None
    d_max = max(d_rss) if d_rss else None
    r = ratio(d_max, e_max)
    ok = None if r is None else r <= RSS_FACTOR
    rows.append((f"resident set after {f'{puts:,}' if puts else '—'} puts (largest member) <= {RSS_FACTOR:g}x etcd",
                 fmt_mib(e_max), fmt_mib(d_max), fmt_ratio(r), verdict(ok, 0)))
    return rows


# ---------------------------------------------------------------------------------------------
# Tables per load


def put_latency_section(results):
    c = 1
    header = ["metric", "etcd", "detcd", "detcd / etcd"]
    rows = []
    for field, name in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        e, d = (results.median(s, "put", field, c) for s in SERVERS)
        rows.append((f"{name} latency (ms)", fmt(e, 3), fmt(d, 3), fmt_ratio(ratio(d, e))))
    e, d = (results.median(s, "put", "qps", c) for s in SERVERS)
    rows.append(("throughput (req/s)", fmt(e), fmt(d), fmt_ratio(ratio(d, e))))
    return "### Puts, 1 client (latency)\n\n" + table(header, rows) + "\n" + errors_note(results, "put", c)


def put_sweep_section(results):
    header = ["clients", "etcd req/s", "detcd req/s", "detcd / etcd", "etcd p99 ms", "detcd p99 ms",
              "p99 detcd / etcd"]
    rows = []
    for c in results.clients("put"):
        e_q, d_q = (results.median(s, "put", "qps", c) for s in SERVERS)
        e_p, d_p = (results.median(s, "put", "p99_ms", c) for s in SERVERS)
        rows.append((c, fmt(e_q), fmt(d_q), fmt_ratio(ratio(d_q, e_q)), fmt(e_p, 3), fmt(d_p, 3),
                     fmt_ratio(ratio(d_p, e_p))))
    out = "### Puts vs clients (throughput)\n\n" + table(header, rows) + "\n"
    if results.repeats > 1:
        spread_rows = []
        for c in results.clients("put"):
            cells = [c]
            for s in SERVERS:
                lo_hi = results.spread(s, "put", "qps", c)
                cells.append("—" if lo_hi is None else f"{fmt(lo_hi[0])} – {fmt(lo_hi[1])}")
            spread_rows.append(cells)
        out += "\nSpread of throughput over the repeats (min – max, req/s):\n\n"
        out += table(["clients", "etcd", "detcd"], spread_rows) + "\n"
    return out + errors_note(results, "put")


def latency_section(results, c):
    header = ["percentile", "etcd ms", "detcd ms", "detcd / etcd"]
    rows = []
    for field, name in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p999_ms", "p99.9"),
                        ("max_ms", "max")):
        e, d = (results.median(s, "put", field, c) for s in SERVERS)
        rows.append((name, fmt(e, 3), fmt(d, 3), fmt_ratio(ratio(d, e))))
    return f"### Put latency at {c} clients\n\n" + table(header, rows) + "\n"


def range_section(results):
    header = ["consistency", "clients", "etcd req/s", "detcd req/s", "detcd / etcd", "etcd p50 / p99 ms",
              "detcd p50 / p99 ms"]
    rows = []
    notes = ""
    for load, name in (("range-l", "linearizable (l)"), ("range-s", "serializable (s)")):
        for c in results.clients(load):
            e_q, d_q = (results.median(s, load, "qps", c) for s in SERVERS)
            lat = {s: f"{fmt(results.median(s, load, 'p50_ms', c), 3)} / {fmt(results.median(s, load, 'p99_ms', c), 3)}"
                   for s in SERVERS}
            rows.append((name, c, fmt(e_q), fmt(d_q), fmt_ratio(ratio(d_q, e_q)), lat["etcd"], lat["detcd"]))
        notes += errors_note(results, load)
    return "### Range reads of one key\n\n" + table(header, rows) + "\n" + notes


def cpu_per_put(results, server, clients):
    """Median over repeats of CPU microseconds per put: leader, each follower, all members, tool."""
    runs = [r for r in results.rows
            if r["server"] == server and r["load"] == "put" and r["clients"] == clients and "cpu_s" in r]
    per_run = []
    for r in runs:
        cpu, puts = r["cpu_s"], r["summary"]["total"]
        used = [after - before for before, after in zip(cpu["before"], cpu["after"])]
        if cpu["leader"] < 0 or not puts:
            continue
        followers = [u for i, u in enumerate(used) if i != cpu["leader"]]
        seconds = {"leader": used[cpu["leader"]], "follower": sum(followers) / len(followers),
                   "members": sum(used), "tool": cpu["tool"], "total": sum(used) + cpu["tool"]}
        per_run.append({k: 1e6 * v / puts for k, v in seconds.items()})
    if not per_run:
        return None
    return {k: statistics.median(run[k] for run in per_run) for k in per_run[0]}


def cpu_section(results, clients):
    e, d = cpu_per_put(results, "etcd", clients), cpu_per_put(results, "detcd", clients)
    if not e or not d:
        return ""
    header = ["CPU per put (µs)", "etcd", "detcd", "detcd / etcd"]
    names = (("leader", "leader"), ("follower", "each follower (mean)"), ("members", "all three members"),
             ("tool", "detcd-bench (the load tool)"), ("total", "members + tool"))
    rows = [(name, fmt(e[k]), fmt(d[k]), fmt_ratio(ratio(d[k], e[k]))) for k, name in names]
    return (f"### CPU per put at {clients} clients\n\n"
            "User + system CPU time of each member (/proc/PID/stat) and of detcd-bench itself during the "
            f"{clients}-client put load, divided by the puts (median over the repeats). Members and tool share "
            "the machine's cores, so once they are busy, throughput is bounded by cores / (members + tool).\n\n"
            + table(header, rows) + "\n")


def rss_section(results):
    (e_rss, puts), (d_rss, _) = results.rss("etcd"), results.rss("detcd")
    if not e_rss or not d_rss:
        return "### Resident set\n\nNot measured.\n"
    header = ["member", "etcd", "detcd", "detcd / etcd"]
    rows = [(f"m{i + 1}", fmt_mib(e), fmt_mib(d), fmt_ratio(ratio(d, e))) for i, (e, d) in enumerate(zip(e_rss, d_rss))]
    rows.append(("largest", fmt_mib(max(e_rss)), fmt_mib(max(d_rss)), fmt_ratio(ratio(max(d_rss), max(e_rss)))))
    rows.append(("all three", fmt_mib(sum(e_rss)), fmt_mib(sum(d_rss)), fmt_ratio(ratio(sum(d_rss), sum(e_rss)))))
    return (f"### Resident set after {puts:,} puts\n\n"
            "VmRSS from /proc/PID/status of each member, read right after the puts (median per member over "
            "the repeats; the member numbers are start order, not roles).\n\n" + table(header, rows) + "\n")


# ---------------------------------------------------------------------------------------------
# SVG


def nice_step(span, ticks=5):
    raw = span / ticks if span > 0 else 1
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


def svg_text(x, y, text, anchor="middle", size=12, extra=""):
    text = str(text).replace("&", "&amp;").replace("<", "&lt;")
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" {extra}>{text}</text>'


def svg_frame(width, height, title):
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        svg_text(width / 2, 22, title, size=15, extra='font-weight="bold"'),
    ]


def y_axis(parts, left, top, plot_w, plot_h, y_max, label):
    step = nice_step(y_max)
    value = 0.0
    while value <= y_max + 1e-9:
        y = top + plot_h - value / y_max * plot_h
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(svg_text(left - 6, y + 4, f"{value:,.6g}", anchor="end", size=11))
        value += step
    parts.append(svg_text(16, top + plot_h / 2, label, extra=f'transform="rotate(-90 16 {top + plot_h / 2:.1f})"'))
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>')


def legend(parts, x, y):
    for i, s in enumerate(SERVERS):
        parts.append(f'<rect x="{x}" y="{y + i * 18 - 9}" width="12" height="12" fill="{COLORS[s]}"/>')
        parts.append(svg_text(x + 18, y + i * 18 + 1, s, anchor="start"))


def throughput_svg(results):
    width, height, left, top, right, bottom = 640, 400, 80, 40, 110, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    clients = results.clients("put")
    series = {s: [(c, results.median(s, "put", "qps", c)) for c in clients] for s in SERVERS}
    values = [q for points in series.values() for _, q in points if q is not None]
    parts = svg_frame(width, height, "Put throughput vs concurrent clients (3 members, loopback)")
    if not clients or not values:
        parts.append(svg_text(width / 2, height / 2, "no data"))
        return "\n".join(parts + ["</svg>"])
    y_max = max(values) * 1.1
    lo = math.floor(math.log10(min(clients)))
    hi = max(math.ceil(math.log10(max(clients))), lo + 1)

    def x_of(c):
        return left + (math.log10(c) - lo) / (hi - lo) * plot_w

    def y_of(q):
        return top + plot_h - q / y_max * plot_h

    y_axis(parts, left, top, plot_w, plot_h, y_max, "requests / s")
    for e in range(lo, hi + 1):
        x = x_of(10 ** e)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#eee"/>')
        parts.append(svg_text(x, top + plot_h + 16, f"{10 ** e:,}", size=11))
    parts.append(svg_text(left + plot_w / 2, height - 12, "concurrent clients (log scale)"))
    for s in SERVERS:
        points = [(x_of(c), y_of(q)) for c, q in series[s] if q is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{COLORS[s]}" stroke-width="2"/>')
        for (x, y), (_, q) in zip(points, [p for p in series[s] if p[1] is not None]):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{COLORS[s]}"><title>{s}: {q:,.0f} req/s</title></circle>')
    legend(parts, left + plot_w + 20, top + 20)
    return "\n".join(parts + ["</svg>"])


def latency_svg(results, c):
    width, height, left, top, right, bottom = 640, 400, 80, 40, 110, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    fields = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"))
    data = {s: [results.median(s, "put", f, c) for f, _ in fields] for s in SERVERS}
    values = [v for vs in data.values() for v in vs if v is not None]
    parts = svg_frame(width, height, f"Put latency percentiles at {c} clients (3 members, loopback)")
    if not values:
        parts.append(svg_text(width / 2, height / 2, "no data"))
        return "\n".join(parts + ["</svg>"])
    y_max = max(values) * 1.15
    y_axis(parts, left, top, plot_w, plot_h, y_max, "latency (ms)")
    group_w = plot_w / len(fields)
    bar_w = group_w / (len(SERVERS) + 1.5)
    for g, (_, name) in enumerate(fields):
        gx = left + g * group_w
        parts.append(svg_text(gx + group_w / 2, top + plot_h + 18, name))
        for i, s in enumerate(SERVERS):
            v = data[s][g]
            if v is None:
                continue
            x = gx + bar_w * 0.75 + i * bar_w
            h = v / y_max * plot_h
            parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w * 0.9:.1f}" height="{h:.1f}" '
                         f'fill="{COLORS[s]}"><title>{s} {name}: {v:.3f} ms</title></rect>')
            parts.append(svg_text(x + bar_w * 0.45, top + plot_h - h - 4, f"{v:.2f}", size=10))
    legend(parts, left + plot_w + 20, top + 20)
    return "\n".join(parts + ["</svg>"])


# ---------------------------------------------------------------------------------------------


def main(argv):
    args = [a for a in argv if a != "--smoke"]
    smoke = "--smoke" in argv
    if len(args) != 4:
        sys.exit(__doc__)
    results_path, machine_path, commands_path, out_dir = args
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = Results(load_results(results_path))
    machine = Path(machine_path).read_text(encoding="utf-8").rstrip()
    commands = Path(commands_path).read_text(encoding="utf-8").rstrip()
    put_clients = results.clients("put")
    latency_clients = TARGET_CLIENTS if TARGET_CLIENTS in put_clients else (max(put_clients) if put_clients else 0)

    (out / THROUGHPUT_SVG).write_text(throughput_svg(results) + "\n", encoding="utf-8")
    (out / LATENCY_SVG).write_text(latency_svg(results, latency_clients) + "\n", encoding="utf-8")

    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = ["# detcd vs etcd 3.4.23: throughput, latency, memory", ""]
    if smoke:
        md += ["> **Smoke run** (`QUICK=1`): tiny totals and one repeat, to check that the script works.",
               "> These numbers mean nothing; generate the real report with `scripts/bench-vs-etcd`.", ""]
    md += [
        f"Generated {generated} by `scripts/bench-vs-etcd`. Each server runs as a 3-member cluster on "
        "loopback, started with the same etcd flags (fsync on, default snapshot settings), one cluster at a "
        f"time, etcd and detcd alternating, {results.repeats} repeat(s); every number is the median over the "
        "repeats. Loads come from `detcd-bench` (a closed loop like etcd's `benchmark` tool: each client "
        "keeps one request in flight; each unary request leaves in one socket write, as from etcd's Go client). "
        "Puts go to the leader; range reads go to all three members.",
        "",
        "## Targets",
        "",
        table(["target", "etcd", "detcd", "detcd / etcd", "verdict"], targets(results)),
        "",
        "## Results",
        "",
        put_latency_section(results),
        put_sweep_section(results),
        f"![Put throughput vs clients]({THROUGHPUT_SVG})",
        "",
        latency_section(results, latency_clients) if latency_clients else "",
        f"![Put latency percentiles]({LATENCY_SVG})",
        "",
        cpu_section(results, latency_clients),
        range_section(results),
        rss_section(results),
        "## Machine",
        "",
        "```",
        machine,
        "```",
        "",
        "## How to reproduce",
        "",
        "```",
        commands,
        "```",
        "",
    ]
    (out / MD).write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {out / MD}, {out / THROUGHPUT_SVG}, {out / LATENCY_SVG}")


if __name__ == "__main__":
    main(sys.argv[1:])
