#!/usr/bin/env python3
"""Side-by-side load bench: prometheus-tunnel against HAProxy and nginx as reverse proxies.

One shared upstream (nginx serving a captured node_exporter page), then each proxy in front of
it with one thread or worker and upstream keep-alive on, measured in alternating rounds with wrk:
requests/s at 32 connections, p50 and p99 at 1 connection (first in each round, on proxies
started afresh), and for each proxy its peak RSS and CPU seconds per 10,000 scrapes. Every figure
is printed as a ratio to HAProxy and to nginx, round by round as well as by medians, for the
plain page, the gzip-encoded page Prometheus asks for, and a 5 MB (kube-state-metrics sized) page.

The upstream sits where real exporters are, on another host: in a network namespace behind a
veth pair (benches/lab.py creates and removes it), and, for comparison, on loopback; with
`tc netem` (where the kernel has it) also behind a link with 1 ms of delay. The CPU model and
kernel are recorded with the figures.

Usage: benches/run.sh [--rounds N] [--duration SECONDS] [--link veth|loopback|delay] [--out DIR]
(benches/run.sh installs nginx, haproxy and wrk when missing, builds the tunnel in release.)
Results: DIR/results.json, DIR/results.md (the README's table) and DIR/results.png.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import (  # noqa: E402
    ROOT, TUNNEL, Lab, Link, cpu_seconds, in_turn, machine, machine_line, warm_up, wrk,
)

PROXIES = ["tunnel", "haproxy", "nginx"]
# Extra tunnel builds measured alongside (--also NAME=PATH[,conf line;conf line]), for experiments.
EXTRA_TUNNELS: dict[str, str] = {}
EXTRA_CONF: dict[str, str] = {}
SCENARIOS = {
    "59 KB page": {"file": "metrics", "headers": []},
    "59 KB page, gzip": {"file": "metrics", "headers": ["Accept-Encoding: gzip"]},
    "5 MB page": {"file": "big", "headers": []},
}
# How the latency runs are made, in each table's heading (runs saved before this order have none).
LATENCY_NOTE = ("; each round restarts the proxies and measures at one connection first, so each "
                "holds one upstream connection, as in front of one exporter")
# The links, by --link name.
LINKS = {
    "veth": lambda: Link("veth"),
    "loopback": lambda: Link("loopback"),
    "delay": lambda: Link("veth", delay_ms=1.0),
}


def measure(lab: Lab, rounds: int, seconds: int) -> dict:
    """Each round: every proxy restarted, the latency runs at one connection, then the
    throughput runs at 32. A proxy fronting one exporter for a Prometheus sees one scrape at a
    time and holds one upstream connection; measured after a 32-connection run instead, HAProxy
    holds 32 and takes them in turn, which on these VMs alone spares the peers' core the cost of
    restarting its tick and moved HAProxy's p50 by 10-20% ("Latency at one connection" in
    benches/README.md). Fresh proxies give each the same history: one connection."""
    results: dict = {s: {p: [] for p in PROXIES} for s in SCENARIOS}
    for r in range(rounds):
        entries: dict = {s: {} for s in SCENARIOS}
        for proxy in PROXIES:
            lab.restart_proxy(proxy)
        warm_up([lab.ports[proxy] for proxy in PROXIES], connections=1)
        for scenario, spec in SCENARIOS.items():
            for proxy in in_turn(r, PROXIES):
                lat = wrk(lab.ports[proxy], spec["file"], spec["headers"], 1, max(2, seconds // 2))
                entries[scenario][proxy] = {
                    "p50_us": lat["p50_us"], "p99_us": lat["p99_us"], "errors": lat["errors"],
                }
        warm_up([lab.ports[proxy] for proxy in PROXIES])
        for scenario, spec in SCENARIOS.items():
            for proxy in in_turn(r, PROXIES):
                port = lab.ports[proxy]
                pid = lab.children[proxy].pid
                cpu_before = cpu_seconds(pid)
                thr = wrk(port, spec["file"], spec["headers"], 32, seconds, watch_pid=pid)
                cpu = cpu_seconds(pid) - cpu_before
                entry = entries[scenario][proxy]
                entry["rps"] = thr["rps"]
                entry["errors"] += thr["errors"]
                entry["cpu_s_per_10k"] = cpu / thr["requests"] * 10_000 if thr["requests"] else None
                # The peak while 32 connections were being served, not what is left after.
                entry["rss_mib"] = thr["peak_rss_mib"]
                results[scenario][proxy].append(entry)
                print(f"round {r + 1} {scenario:>18} {proxy:>8}: {thr['rps']:>9.0f} req/s, "
                      f"p50 {entry['p50_us']:.0f} us, p99 {entry['p99_us']:.0f} us", flush=True)
    return results


def summarize(results: dict) -> dict:
    summary = {}
    for scenario, by_proxy in results.items():
        summary[scenario] = {}
        for proxy, runs in by_proxy.items():
            s = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_us", "p99_us")}
            s["errors"] = sum(r["errors"] for r in runs)
            s["cpu_s_per_10k"] = statistics.median(r["cpu_s_per_10k"] for r in runs)
            s["rss_mib"] = max(r["rss_mib"] for r in runs)
            summary[scenario][proxy] = s
    return summary


def markdown(summary: dict, meta: dict, link: str, runs: dict | None = None) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['machine']}; upstream: {link}; {meta['rounds']} alternating "
        f"rounds of {meta['duration']} s per figure, medians; one thread or worker per proxy, upstream "
        f"keep-alive on{LATENCY_NOTE if meta.get('fresh_for_latency') else ''}.",
        "",
        "| page | proxy | req/s at 32 conns | vs HAProxy | vs nginx | p50 at 1 conn | p99 at 1 conn | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario, by_proxy in summary.items():
        h, n = by_proxy["haproxy"], by_proxy["nginx"]
        for proxy in PROXIES:
            s = by_proxy[proxy]
            lines.append(
                f"| {scenario} | {proxy} | {s['rps']:,.0f} | {s['rps'] / h['rps']:.2f}x | {s['rps'] / n['rps']:.2f}x "
                f"| {s['p50_us']:.0f} us ({s['p50_us'] / h['p50_us']:.2f}x) | {s['p99_us']:.0f} us | {s['errors']} |"
            )
    lines.append("")
    lines.append("| page | proxy | peak RSS under load | CPU seconds per 10,000 scrapes | vs HAProxy | vs nginx |")
    lines.append("|---|---|---|---|---|---|")
    for scenario, by_proxy in summary.items():
        h, n = by_proxy["haproxy"], by_proxy["nginx"]
        for proxy in PROXIES:
            t = by_proxy[proxy]
            lines.append(
                f"| {scenario} | {proxy} | {t['rss_mib']:.1f} MiB | {t['cpu_s_per_10k']:.3f} s "
                f"| {t['cpu_s_per_10k'] / h['cpu_s_per_10k']:.2f}x | {t['cpu_s_per_10k'] / n['cpu_s_per_10k']:.2f}x |"
            )
    if runs is not None:
        lines.append("")
        lines.extend(round_by_round(runs))
    return "\n".join(lines) + "\n"


def paired_ratios(runs: dict, proxy: str, other: str, key: str = "rps") -> list[float]:
    """`proxy`'s figure over `other`'s, round by round: the two ran minutes apart at most, so
    the machine's drift between rounds (up to 10% here) cancels out of each ratio."""
    return [a[key] / b[key] for a, b in zip(runs[proxy], runs[other]) if a[key] and b[key]]


def spread(ratios: list[float], better: str = "above") -> str:
    """A round-by-round ratio: its median, its range, and the rounds on the better side of 1.0x
    (`above` for throughput, `below` for CPU and latency)."""
    if not ratios:
        return "n/a (no round measured both)"
    good = sum(r >= 1.0 if better == "above" else r <= 1.0 for r in ratios)
    return (f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x; "
            f"{good} of {len(ratios)} at or {better} 1.0x)")


def round_by_round(runs: dict) -> list[str]:
    """Each tunnel build's throughput against HAProxy's and nginx's, and its CPU per scrape and
    p50 against HAProxy's, paired round by round: whether a lead holds in every round or only
    in the medians."""
    lines = [
        "| page | proxy | req/s vs HAProxy, round by round | req/s vs nginx, round by round "
        "| CPU per scrape vs HAProxy, round by round | p50 at 1 conn vs HAProxy, round by round |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, by_proxy in runs.items():
        for proxy in by_proxy:
            if proxy in ("haproxy", "haproxy-splice", "nginx"):
                continue
            lines.append(f"| {scenario} | {proxy} | {spread(paired_ratios(by_proxy, proxy, 'haproxy'))} "
                         f"| {spread(paired_ratios(by_proxy, proxy, 'nginx'))} "
                         f"| {spread(paired_ratios(by_proxy, proxy, 'haproxy', 'cpu_s_per_10k'), 'below')} "
                         f"| {spread(paired_ratios(by_proxy, proxy, 'haproxy', 'p50_us'), 'below')} |")
    return lines


def chart(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    scenarios = list(summary)
    colors = {"tunnel": "#e6522c", "haproxy": "#4a90d9", "nginx": "#2e9e44"}
    width = 0.8 / len(PROXIES)
    for i, proxy in enumerate(PROXIES):
        xs = [j + (i - (len(PROXIES) - 1) / 2) * width for j in range(len(scenarios))]
        axes[0].bar(xs, [summary[s][proxy]["rps"] / summary[s]["haproxy"]["rps"] for s in scenarios],
                    width, label=proxy, color=colors.get(proxy))
        axes[1].bar(xs, [summary[s][proxy]["p50_us"] / summary[s]["haproxy"]["p50_us"] for s in scenarios],
                    width, label=proxy, color=colors.get(proxy))
    axes[0].axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes[0].set_title("Throughput at 32 connections, relative to HAProxy", fontsize=10)
    axes[1].axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes[1].set_title("p50 latency at 1 connection, relative to HAProxy (lower is better)", fontsize=10)
    for ax in axes:
        ax.set_xticks(range(len(scenarios)))
        ax.set_xticklabels(scenarios, fontsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per throughput run")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results")
    parser.add_argument("--link", choices=list(LINKS), action="append",
                        help="where the upstream is (default: veth, loopback and delay)")
    parser.add_argument("--also", action="append", default=[], metavar="NAME=PATH",
                        help="also measure another tunnel binary (an experiment) under NAME")
    parser.add_argument("--only", choices=list(SCENARIOS), action="append",
                        help="run only these page scenarios")
    parser.add_argument("--haproxy-splice", action="store_true",
                        help="also measure HAProxy with `option splice-response` (kernel-side copy of "
                             "bodies), to see what splicing would save")
    parser.add_argument("--replot", action="store_true",
                        help="redraw DIR/results.png and results.md from DIR/results.json without measuring")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads((args.out / "results.json").read_text())
        write_reports(saved, args.out)
        return
    for spec in args.also:
        name, _, rest = spec.partition("=")
        path, _, conf = rest.partition(",")
        EXTRA_TUNNELS[name] = path or str(TUNNEL)
        EXTRA_CONF[name] = "".join(f"{line.strip()}\n" for line in conf.split(";") if line.strip())
        PROXIES.append(name)
    if args.haproxy_splice:
        PROXIES.append("haproxy-splice")
    if args.only:
        for scenario in list(SCENARIOS):
            if scenario not in args.only:
                del SCENARIOS[scenario]
    if not TUNNEL.exists():
        sys.exit("build the tunnel first: cargo build --release --locked (benches/run.sh does)")
    links = args.link or ["veth", "loopback", "delay"]
    if "delay" in links:
        available, why = Link.netem_available()
        if not available:
            print(f"skipping the 1 ms delay link: this kernel has no tc netem ({why})", flush=True)
            links.remove("delay")
    args.out.mkdir(parents=True, exist_ok=True)
    saved = {
        "meta": {
            "date": time.strftime("%Y-%m-%d"),
            "machine": machine_line(machine()),
            "rounds": args.rounds,
            "duration": args.duration,
            "fresh_for_latency": True,
        },
        "links": {},
    }
    for name in links:
        with LINKS[name]() as link, tempfile.TemporaryDirectory() as tmp:
            print(f"== upstream: {link.name}", flush=True)
            lab = Lab(Path(tmp), link, EXTRA_TUNNELS, EXTRA_CONF)
            try:
                lab.start_upstream()
                for proxy in PROXIES:
                    lab.start_proxy(proxy)
                results = measure(lab, args.rounds, args.duration)
            finally:
                lab.stop()
            saved["links"][link.name] = {"summary": summarize(results), "runs": results}
    (args.out / "results.json").write_text(json.dumps(saved, indent=2))
    write_reports(saved, args.out)
    print()
    print((args.out / "results.md").read_text())
    for link, data in saved["links"].items():
        for scenario, by_proxy in data["summary"].items():
            if any(s["errors"] for s in by_proxy.values()):
                sys.exit(f"errors in {scenario} ({link}): the figures are not comparable")


def write_reports(saved: dict, out: Path) -> None:
    """results.md (a table per link) and results.png (the first link's chart)."""
    tables = [markdown(data["summary"], saved["meta"], link, data.get("runs"))
              for link, data in saved["links"].items()]
    (out / "results.md").write_text("\n".join(tables))
    first = next(iter(saved["links"].values()))
    chart(first["summary"], out / "results.png")


if __name__ == "__main__":
    main()
