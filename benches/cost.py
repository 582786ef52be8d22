#!/usr/bin/env python3
"""Where a scrape's CPU goes, proxy by proxy: user and kernel time, system calls, context switches
and the wake-ups it causes, per scrape, side by side with HAProxy and nginx.

Each proxy runs in front of the bench's nginx upstream across the veth link (benches/lab.py),
one at a time, while wrk scrapes one page at 32 connections (or
`--connections`). From `/proc` come the proxy's user
and kernel CPU per scrape; from `perf stat` on the proxy its system calls and context switches
per scrape; from `perf stat -a` (the whole machine: wrk, the proxy, the upstream) the scheduler's
wake-ups and the inter-processor interrupts per scrape, which is where a proxy that sends to
peers that are asleep pays: the kernel charges waking the reader to the sender. A second table
splits the machine's time per scrape between the proxy, the upstream, the rest (wrk) and idle
(`/proc/stat`): on two cores shared by three processes, CPU a proxy saves can go to idle rather
than to throughput, and this shows where it went. Rounds alternate the proxies' order; each
figure is the median of the rounds.

Usage: benches/cost.sh [--page "59 KB page, gzip"] [--connections N] [--rounds N]
       [--duration SECONDS] [--name cost.md]
(benches/cost.sh installs nginx, haproxy, wrk and perf when missing and builds the tunnel.)
Result: benches/results/cost.md.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402
from load import SCENARIOS  # noqa: E402

PROXIES = ["tunnel", "haproxy", "nginx"]
# Counted on the proxy's own processes.
SYSCALLS = ["recvfrom", "sendto", "writev", "read", "write", "epoll_wait", "splice"]
# Counted machine-wide, if this kernel has them.
SYSTEM_EVENTS = {"sched:sched_wakeup": "wake-ups", "ipi:ipi_send_cpu": "IPIs"}


def perf_has(event: str) -> bool:
    """Whether `perf stat` can count `event` on this kernel."""
    probe = subprocess.run(["perf", "stat", "-x,", "-e", event, "--", "true"],
                           capture_output=True, text=True)
    return probe.returncode == 0 and "not supported" not in probe.stderr


def counted(perf: subprocess.Popen) -> dict[str, float]:
    """The counts a `perf stat -x,` child printed once interrupted."""
    perf.send_signal(2)
    _, err = perf.communicate(timeout=30)
    counts = {}
    for line in err.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[0].replace(".", "").isdigit():
            counts[fields[2]] = float(fields[0])
    return counts


def machine_busy_idle() -> tuple[int, int]:
    """The machine's busy and idle time so far, in clock ticks, from /proc/stat: idle (and
    waiting for I/O) against all the rest."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, idle


def one_run(lab_: lab.Lab, proxy: str, spec: dict, connections: int, seconds: int,
            system_events: list[str]) -> dict:
    """One wrk run against `proxy` with its counters; figures per scrape."""
    pid = lab_.children[proxy].pid
    pids = ",".join(str(p) for p in lab.family(pid))
    own = ",".join([f"syscalls:sys_enter_{s}" for s in SYSCALLS] + ["context-switches"])
    perf_own = subprocess.Popen(["perf", "stat", "-x,", "-e", own, "-p", pids],
                                stderr=subprocess.PIPE, text=True)
    perf_all = None
    if system_events:
        perf_all = subprocess.Popen(["perf", "stat", "-x,", "-a", "-e", ",".join(system_events)],
                                    stderr=subprocess.PIPE, text=True)
    time.sleep(0.2)  # perf attached before the load starts
    ticks = os.sysconf("SC_CLK_TCK")

    def user_kernel() -> tuple[float, float]:
        user = kernel = 0
        for p in lab.family(pid):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11])
            kernel += int(fields[12])
        return user / ticks, kernel / ticks

    upstream = lab_.children["upstream"].pid
    user0, kernel0 = user_kernel()
    busy0, idle0 = machine_busy_idle()
    upstream0 = lab.cpu_ns(upstream)
    result = lab.wrk(lab_.ports[proxy], spec["file"], spec["headers"], connections, seconds)
    upstream1 = lab.cpu_ns(upstream)
    busy1, idle1 = machine_busy_idle()
    user1, kernel1 = user_kernel()
    own_counts = counted(perf_own)
    all_counts = counted(perf_all) if perf_all else {}
    n = max(result["requests"], 1)
    figures = {
        "rps": result["rps"],
        "p50_us": result["p50_us"],
        "user_us": (user1 - user0) / n * 1e6,
        "kernel_us": (kernel1 - kernel0) / n * 1e6,
        "errors": result["errors"],
        "upstream_us": (upstream1 - upstream0) / 1e3 / n,
        "busy_us": (busy1 - busy0) / ticks / n * 1e6,
        "idle_us": (idle1 - idle0) / ticks / n * 1e6,
    }
    # Whatever ran on the machine besides the proxy and the upstream: wrk, mostly.
    figures["rest_us"] = (figures["busy_us"] - figures["user_us"] - figures["kernel_us"]
                          - figures["upstream_us"])
    for name in SYSCALLS:
        figures[name] = own_counts.get(f"syscalls:sys_enter_{name}", 0.0) / n
    figures["context switches"] = own_counts.get("context-switches", 0.0) / n
    for event, label in SYSTEM_EVENTS.items():
        if event in system_events:
            figures[label] = all_counts.get(event, 0.0) / n
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--page", choices=list(SCENARIOS), default="59 KB page, gzip")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=lab.ROOT / "benches" / "results")
    parser.add_argument("--name", default="cost.md", help="the result's file name in --out")
    args = parser.parse_args()
    if not lab.TUNNEL.exists():
        sys.exit("build the tunnel first: benches/cost.sh does")
    if not perf_has("syscalls:sys_enter_recvfrom"):
        sys.exit("perf cannot count system calls here (perf missing, or no tracepoints: run as "
                 "root with /sys/kernel/tracing mounted)")
    system_events = [e for e in SYSTEM_EVENTS if perf_has(e)]
    for event in SYSTEM_EVENTS:
        if event not in system_events:
            print(f"this kernel cannot count {event}: its column is left out", flush=True)
    spec = SCENARIOS[args.page]
    runs: dict[str, list[dict]] = {p: [] for p in PROXIES}
    with lab.Link("veth") as link, tempfile.TemporaryDirectory() as tmp:
        lab_ = lab.Lab(Path(tmp), link)
        try:
            lab_.start_upstream()
            for proxy in PROXIES:
                lab_.start_proxy(proxy)
            lab.warm_up([lab_.ports[proxy] for proxy in PROXIES])
            for r in range(args.rounds):
                for proxy in lab.in_turn(r, PROXIES):
                    runs[proxy].append(one_run(lab_, proxy, spec, args.connections, args.duration,
                                               system_events))
                    print(f"round {r + 1}: {proxy}: {runs[proxy][-1]['rps']:.0f} req/s", flush=True)
        finally:
            lab_.stop()
    median = {p: {k: statistics.median(run[k] for run in rs) for k in rs[0]} for p, rs in runs.items()}
    columns = ["user_us", "kernel_us", *SYSCALLS, "context switches",
               *[SYSTEM_EVENTS[e] for e in system_events]]
    titles = {"user_us": "user CPU", "kernel_us": "kernel CPU"}
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {lab.machine_line(lab.machine())}; upstream: veth; "
        f"{args.page}, {args.connections} connection{'s' if args.connections != 1 else ''}; {args.rounds} alternating rounds of {args.duration} s, medians; "
        "one thread or worker per proxy. Per scrape: CPU in microseconds, the rest in counts "
        "(wake-ups and IPIs machine-wide).",
        "",
        "| proxy | req/s | p50 | " + " | ".join(titles.get(c, c) for c in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for proxy, m in median.items():
        cells = [f"{m['user_us']:.1f} us", f"{m['kernel_us']:.1f} us"]
        cells += [f"{m[c]:.2f}" for c in columns[2:]]
        lines.append(f"| {proxy} | {m['rps']:,.0f} | {m['p50_us']:.0f} us | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Where the machine's two cores went per scrape while each proxy was in the middle: the "
        "proxy, the upstream nginx (across the veth link, its CPU from the scheduler's account), "
        "the rest (wrk, mostly) and idle (`/proc/stat`), in microseconds:",
        "",
        "| proxy | proxy | upstream | the rest | idle | all |",
        "|---|---|---|---|---|---|",
    ]
    for proxy, m in median.items():
        own = m["user_us"] + m["kernel_us"]
        lines.append(f"| {proxy} | {own:.1f} | {m['upstream_us']:.1f} | {m['rest_us']:.1f} "
                     f"| {m['idle_us']:.1f} | {m['busy_us'] + m['idle_us']:.1f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / args.name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if any(m["errors"] for m in median.values()):
        sys.exit("errors during the runs: the figures are not comparable")


if __name__ == "__main__":
    main()
