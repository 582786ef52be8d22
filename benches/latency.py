#!/usr/bin/env python3
"""Latency at one connection with each process on a fixed core: the proxy alone on one, the
client (wrk) and the upstream on the other, the same for every proxy.

`load.py` measures p50 with nothing pinned, as a deployment would run. On this 2-core VM its
figure then moves with where the scheduler puts the three processes: the same build gave 79 us
and 127 us in two runs a minute apart, depending on whether the proxy shared a core with wrk or
with the upstream. Pinned, the placement is the same for every proxy and every round, and the
per-proxy spread falls to a few microseconds. Each round scrapes at 32 connections first (as
`load.py` does before its latency run), then measures at one. The proxy's CPU per scrape at one
connection comes from the scheduler's own account (`/proc/PID/task/*/schedstat`).

`--before 1` warms up and precedes each measurement at one connection instead, so that every
proxy holds one connection to the upstream. After 32, HAProxy keeps 32 and takes them in turn;
the TCP timers each leaves behind then fire on the peers' core and keep its scheduler tick
running, and on this VM a core whose tick was stopped wakes its task 10-15 us later (restarting
the tick exits to the hypervisor). The tunnel reuses its most recent connection. Comparing both
histories tells that effect apart from the proxies' own latency (benches/README.md, "Latency at
one connection").

Usage: benches/latency.sh [--page "59 KB page, gzip"] [--rounds N] [--duration SECONDS] [--before N]
(benches/latency.sh installs nginx, haproxy and wrk when missing and builds the tunnel.)
Result: benches/results/latency.md (latency-after-N.md with --before N other than 32).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402
from load import SCENARIOS  # noqa: E402

PROXIES = ["tunnel", "haproxy", "nginx"]
# The proxy's core, and the one the client and the upstream share.
PROXY_CPU, PEERS_CPU = 1, 0


def pin_peers(lab_: lab.Lab) -> None:
    """The upstream nginx (every process of it) and this script, whose children (wrk) inherit
    its affinity, onto the peers' core."""
    upstream = lab_.children["upstream"].pid
    lab.pin(upstream, {PEERS_CPU})
    os.sched_setaffinity(0, {PEERS_CPU})


def one_round(lab_: lab.Lab, proxy: str, spec: dict, seconds: int, before: int) -> dict:
    """`before` connections for `seconds`, then p50, p99 and the proxy's CPU per scrape at
    one."""
    port, pid = lab_.ports[proxy], lab_.children[proxy].pid
    lab.wrk(port, spec["file"], spec["headers"], before, seconds)
    cpu_before = lab.cpu_ns(pid)
    run = lab.wrk(port, spec["file"], spec["headers"], 1, seconds)
    cpu_ns = lab.cpu_ns(pid) - cpu_before
    return {
        "p50_us": run["p50_us"],
        "p99_us": run["p99_us"],
        "cpu_us": cpu_ns / 1000 / run["requests"] if run["requests"] else float("nan"),
        "errors": run["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--page", choices=list(SCENARIOS), default="59 KB page, gzip")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=2, help="seconds per run")
    parser.add_argument("--before", type=int, default=32,
                        help="connections of the warm-up and of the run before each measurement")
    parser.add_argument("--out", type=Path, default=lab.ROOT / "benches" / "results")
    args = parser.parse_args()
    if args.before < 1:
        sys.exit(f"--before {args.before}: expected a number of connections, 1 or more")
    if not lab.TUNNEL.exists():
        sys.exit("build the tunnel first: benches/latency.sh does")
    if os.cpu_count() is None or os.cpu_count() < 2:
        sys.exit("this bench needs two cores: one for the proxy, one for its peers")
    spec = SCENARIOS[args.page]
    runs: dict[str, list[dict]] = {p: [] for p in PROXIES}
    with lab.Link("veth") as link, tempfile.TemporaryDirectory() as tmp:
        lab_ = lab.Lab(Path(tmp), link)
        try:
            lab_.start_upstream()
            for proxy in PROXIES:
                lab_.start_proxy(proxy)
                lab.pin(lab_.children[proxy].pid, {PROXY_CPU})
            pin_peers(lab_)
            lab.warm_up([lab_.ports[proxy] for proxy in PROXIES], args.before)
            for r in range(args.rounds):
                for proxy in lab.in_turn(r, PROXIES):
                    runs[proxy].append(one_round(lab_, proxy, spec, args.duration, args.before))
                    got = runs[proxy][-1]
                    print(f"round {r + 1}: {proxy}: p50 {got['p50_us']:.0f} us, "
                          f"{got['cpu_us']:.1f} us CPU per scrape", flush=True)
        finally:
            lab_.stop()
    median = {p: {k: statistics.median(run[k] for run in rs) for k in ("p50_us", "p99_us", "cpu_us")}
              for p, rs in runs.items()}
    base = median["haproxy"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {lab.machine_line(lab.machine())}; upstream: veth; "
        f"{args.page}, one connection after {args.before}; {args.rounds} alternating rounds of "
        f"{args.duration} s, medians; the proxy alone on CPU {PROXY_CPU}, wrk and the upstream on "
        f"CPU {PEERS_CPU}; one thread or worker per proxy.",
        "",
        "| proxy | p50 | vs HAProxy | p50 per round | p99 | proxy CPU per scrape | vs HAProxy |",
        "|---|---|---|---|---|---|---|",
    ]
    for proxy, m in median.items():
        rounds = ", ".join(f"{run['p50_us']:.0f}" for run in runs[proxy])
        lines.append(
            f"| {proxy} | {m['p50_us']:.0f} us | {m['p50_us'] / base['p50_us']:.2f}x | {rounds} | "
            f"{m['p99_us']:.0f} us | {m['cpu_us']:.1f} us | {m['cpu_us'] / base['cpu_us']:.2f}x |")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "latency.md" if args.before == 32 else f"latency-after-{args.before}.md"
    (args.out / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if any(run["errors"] for rs in runs.values() for run in rs):
        sys.exit("errors during the runs: the figures are not comparable")


if __name__ == "__main__":
    main()
