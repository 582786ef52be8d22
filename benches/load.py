#!/usr/bin/env python3
"""Side-by-side load bench: prometheus-tunnel against HAProxy and nginx as reverse proxies.

One shared upstream (nginx serving a captured node_exporter page), then each proxy in front of
it with one thread or worker and upstream keep-alive on, measured in alternating rounds with wrk:
requests/s at 32 connections, p50 and p99 at 1 connection, and for each proxy its peak RSS and CPU
seconds per 10,000 scrapes. Every figure is printed as a ratio to HAProxy and to nginx, for the
plain page, the gzip-encoded page Prometheus asks for, and a 5 MB (kube-state-metrics sized) page.

Usage: benches/run.sh [--rounds N] [--duration SECONDS] [--out DIR]
(benches/run.sh installs nginx, haproxy and wrk when missing, builds the tunnel in release.)
Results: DIR/results.json, DIR/results.md (the README's table) and DIR/results.png.
"""

import argparse
import gzip
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "benches" / "node_exporter_page.txt"
TUNNEL = ROOT / "target" / "release" / "prometheus-tunnel"
PROXIES = ["tunnel", "haproxy", "nginx"]
# Extra tunnel builds measured alongside (--also NAME=PATH[,conf line;conf line]), for experiments.
EXTRA_TUNNELS: dict[str, str] = {}
EXTRA_CONF: dict[str, str] = {}
SCENARIOS = {
    "59 KB page": {"file": "metrics", "headers": []},
    "59 KB page, gzip": {"file": "metrics", "headers": ["Accept-Encoding: gzip"]},
    "5 MB page": {"file": "big", "headers": []},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nginx_conf(work: Path, name: str, http_body: str) -> str:
    """An nginx conf: one worker in the foreground, no access log, long keep-alive."""
    return f"""
worker_processes 1;
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
{http_body}
}}
"""


# The tunnel's Pingora conf in every bench: one thread, as the other proxies get; a quick stop.
TUNNEL_CONF = "version: 1\nthreads: 1\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\n"


def tunnel_env(upstream_port: int, port: int) -> dict[str, str]:
    """The tunnel's environment: the upstream on loopback, the proxy port `port`, and a free
    metrics port."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "SERVER_IP": "127.0.0.1",
        "SERVER_PORT": str(upstream_port),
        "LISTEN_ADDRESS": "127.0.0.1",
        "LISTEN_PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "RUST_LOG": "warn",
    }


def wait_port(port: int, limit: float = 10.0) -> None:
    start = time.time()
    while time.time() - start < limit:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if not path:
        sys.exit(f"{name} is not installed: run benches/run.sh, which installs it")
    return path


class Lab:
    """The upstream and the three proxies, each a child process on free loopback ports."""

    def __init__(self, work: Path):
        self.work = work
        self.children: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}

    def start_upstream(self) -> None:
        # nginx workers run as an unprivileged user when started as root: they must be able to
        # read the page.
        self.work.chmod(0o755)
        root = self.work / "www"
        root.mkdir(mode=0o755)
        page = PAGE.read_bytes()
        (root / "metrics").write_bytes(page)
        (root / "metrics.gz").write_bytes(gzip.compress(page, 6))
        big = (page * (5 * 1024 * 1024 // len(page) + 1))[: 5 * 1024 * 1024]
        (root / "big").write_bytes(big)
        port = free_port()
        conf = self.work / "upstream.conf"
        conf.write_text(nginx_conf(self.work, "upstream", f"""
    gzip_static on;
    default_type "text/plain; version=0.0.4";
    server {{ listen 127.0.0.1:{port}; root {root}; }}"""))
        self._spawn("upstream", [tool("nginx"), "-c", str(conf), "-e", str(self.work / "upstream.err")])
        self.ports["upstream"] = port
        wait_port(port)

    def start_proxy(self, name: str) -> None:
        up = self.ports["upstream"]
        port = free_port()
        if name == "tunnel" or name in EXTRA_TUNNELS:
            conf = self.work / f"{name}.yaml"
            conf.write_text(TUNNEL_CONF + EXTRA_CONF.get(name, ""))
            binary = EXTRA_TUNNELS.get(name, str(TUNNEL))
            self._spawn(name, [binary, "-c", str(conf)], env=tunnel_env(up, port))
        elif name == "haproxy":
            conf = self.work / "haproxy.cfg"
            conf.write_text(f"""
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server up 127.0.0.1:{up}
""")
            self._spawn("haproxy", [tool("haproxy"), "-f", str(conf), "-db"])
        elif name == "nginx":
            conf = self.work / "nginx-proxy.conf"
            conf.write_text(nginx_conf(self.work, "proxy", f"""
    upstream up {{ server 127.0.0.1:{up}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""))
            self._spawn("nginx", [tool("nginx"), "-c", str(conf), "-e", str(self.work / "proxy.err")])
        self.ports[name] = port
        try:
            wait_port(port)
        except RuntimeError:
            self.stop()
            sys.exit(f"{name} did not start; its log:\n{(self.work / f'{name}.log').read_text()}")

    def _spawn(self, name: str, cmd: list[str], env=None) -> None:
        log = open(self.work / f"{name}.log", "w")
        self.children[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> None:
        for child in self.children.values():
            child.send_signal(signal.SIGINT)
        for child in self.children.values():
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()


def wrk(port: int, path: str, headers: list[str], connections: int, seconds: int,
        watch_pid: int | None = None) -> dict:
    """One wrk run; with `watch_pid`, also the peak RSS of that process (and its children)
    sampled every 0.2 s while wrk runs."""
    cmd = [tool("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{port}/{path}")
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_rss = 0.0
    while watch_pid is not None and child.poll() is None:
        peak_rss = max(peak_rss, rss_mib(watch_pid))
        time.sleep(0.2)
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"wrk failed: {err}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]

    return {
        "rps": rps,
        "requests": requests,
        "p50_us": pct("50"),
        "p99_us": pct("99"),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "peak_rss_mib": peak_rss,
    }


def family(pid: int) -> list[int]:
    """`pid` and its descendants (nginx's workers do its work, not its master)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            pids.extend(family(int(child)))
    return pids


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    total = 0
    for p in family(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def measure(lab: Lab, rounds: int, seconds: int) -> dict:
    results: dict = {s: {p: [] for p in PROXIES} for s in SCENARIOS}
    for r in range(rounds):
        for scenario, spec in SCENARIOS.items():
            # Alternate the order each round so no proxy always runs on a warmer machine.
            order = PROXIES if r % 2 == 0 else list(reversed(PROXIES))
            for proxy in order:
                port = lab.ports[proxy]
                pid = lab.children[proxy].pid
                cpu_before = cpu_seconds(pid)
                thr = wrk(port, spec["file"], spec["headers"], 32, seconds, watch_pid=pid)
                cpu = cpu_seconds(pid) - cpu_before
                lat = wrk(port, spec["file"], spec["headers"], 1, max(2, seconds // 2))
                entry = {
                    "rps": thr["rps"],
                    "p50_us": lat["p50_us"],
                    "p99_us": lat["p99_us"],
                    "errors": thr["errors"] + lat["errors"],
                }
                entry["cpu_s_per_10k"] = cpu / thr["requests"] * 10_000 if thr["requests"] else None
                # The peak while 32 connections were being served, not what is left after.
                entry["rss_mib"] = thr["peak_rss_mib"]
                results[scenario][proxy].append(entry)
                print(f"round {r + 1} {scenario:>18} {proxy:>8}: {thr['rps']:>9.0f} req/s, "
                      f"p50 {lat['p50_us']:.0f} us, p99 {lat['p99_us']:.0f} us", flush=True)
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


def markdown(summary: dict, meta: dict) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['machine']}; {meta['rounds']} alternating rounds of "
        f"{meta['duration']} s per figure, medians; one thread or worker per proxy, upstream keep-alive on.",
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
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--also", action="append", default=[], metavar="NAME=PATH",
                        help="also measure another tunnel binary (an experiment) under NAME")
    parser.add_argument("--only", choices=list(SCENARIOS), action="append",
                        help="run only these page scenarios")
    parser.add_argument("--replot", action="store_true",
                        help="redraw DIR/results.png and results.md from DIR/results.json without measuring")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads((args.out / "results.json").read_text())
        chart(saved["summary"], args.out / "results.png")
        (args.out / "results.md").write_text(markdown(saved["summary"], saved["meta"]))
        return
    for spec in args.also:
        name, _, rest = spec.partition("=")
        path, _, conf = rest.partition(",")
        EXTRA_TUNNELS[name] = path or str(TUNNEL)
        EXTRA_CONF[name] = "".join(f"{line.strip()}\n" for line in conf.split(";") if line.strip())
        PROXIES.append(name)
    if args.only:
        for scenario in list(SCENARIOS):
            if scenario not in args.only:
                del SCENARIOS[scenario]
    if not TUNNEL.exists():
        sys.exit("build the tunnel first: cargo build --release --locked (benches/run.sh does)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp))
        try:
            lab.start_upstream()
            for proxy in PROXIES:
                lab.start_proxy(proxy)
            for proxy in PROXIES:  # warm up connections and caches
                wrk(lab.ports[proxy], "metrics", [], 8, 1)
            results = measure(lab, args.rounds, args.duration)
        finally:
            lab.stop()
    summary = summarize(results)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {os.uname().machine}, Linux {os.uname().release}",
        "rounds": args.rounds,
        "duration": args.duration,
    }
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "summary": summary, "runs": results}, indent=2))
    table = markdown(summary, meta)
    (args.out / "results.md").write_text(table)
    chart(summary, args.out / "results.png")
    print()
    print(table)
    for scenario, by_proxy in summary.items():
        if any(s["errors"] for s in by_proxy.values()):
            sys.exit(f"errors in {scenario}: the figures are not comparable")


if __name__ == "__main__":
    main()
