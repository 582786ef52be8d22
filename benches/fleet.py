#!/usr/bin/env python3
"""A fleet through one proxy: 1,000 distinct exporters, each scraped at a fixed rate through
the tunnel in multi-target mode (`?target=tNNNN`), and through HAProxy with the same 1,000
servers (one backend each, chosen by the same query parameter), over plain HTTP and over TLS.

The exporters are one nginx listening on 1,000 ports (and 1,000 more with TLS, a certificate
made by openssl), on another host: a network namespace behind a veth pair that benches/lab.py
creates and removes, pinned to CPU 1. Prometheus is a Python asyncio client on this host that
scrapes every target once per interval over 50 kept-alive connections, asking for gzip as
Prometheus does; the proxies run with one thread, on CPU 0 with the client.

Per proxy and scheme, after a warm-up that scrapes every target once (connections opened,
handshakes made): CPU per scrape, peak RSS, the connections held to the exporters at the end,
and new exporter connections per minute in the measured window (counted by nginx's
stub_status; over TLS each one is a handshake). The goal: CPU per scrape and RSS no worse than
HAProxy's, and no new connection (no handshake) per scrape.

Usage: benches/fleet.sh [--targets N] [--interval SECONDS] [--duration SECONDS] [--rounds N]
       [--out DIR]
Results: DIR/fleet.json and DIR/fleet.md.
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import (  # noqa: E402
    ROOT, TUNNEL, TUNNEL_CONF, Link, cpu_ns, free_port, haproxy_head, in_turn, machine,
    machine_line, openssl, pin, reap, rss_mib, tool, wait_port, write_pages,
)

PLAIN_BASE = 20000
TLS_BASE = 24000
CLIENT_CONNECTIONS = 50


def certificates(work: Path, upstream_ip: str) -> None:
    """A CA and the exporters' certificate (CN exporter, SAN the exporters' address)."""
    openssl(work, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=fleet CA")
    (work / "server.ext").write_text(f"subjectAltName=DNS:exporter,IP:{upstream_ip}\n")
    openssl(work, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=exporter")
    openssl(work, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")


class Fleet:
    """nginx on `targets` plain ports and as many TLS ports, behind `link`."""

    def __init__(self, work: Path, link: Link, targets: int):
        self.work, self.link, self.targets = work, link, targets
        self.status_port = PLAIN_BASE - 1
        self.child: subprocess.Popen | None = None

    def start(self) -> None:
        root = write_pages(self.work)
        host = self.link.upstream_host
        plain = "\n".join(f"        listen {host}:{PLAIN_BASE + i};" for i in range(self.targets))
        tls = "\n".join(f"        listen {host}:{TLS_BASE + i} ssl;" for i in range(self.targets))
        conf = self.work / "fleet.conf"
        conf.write_text(f"""
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid {self.work}/fleet.pid;
error_log {self.work}/fleet.err warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    gzip_static on;
    default_type "text/plain; version=0.0.4";
    server {{
{plain}
        root {root};
    }}
    server {{
{tls}
        ssl_certificate {self.work / 'server.crt'};
        ssl_certificate_key {self.work / 'server.key'};
        ssl_protocols TLSv1.3;
        root {root};
    }}
    server {{
        listen {host}:{self.status_port};
        location = /status {{ stub_status; }}
    }}
}}
""")
        log = open(self.work / "fleet.log", "w")
        self.child = subprocess.Popen(
            self.link.upstream_command([tool("nginx"), "-c", str(conf), "-e", str(self.work / "fleet.err")]),
            stdout=log, stderr=subprocess.STDOUT)
        wait_port(PLAIN_BASE + self.targets - 1, host)
        wait_port(TLS_BASE + self.targets - 1, host)
        pin(self.child.pid, {1})

    def accepted(self) -> int:
        """Connections nginx accepted so far (stub_status), its own status requests included."""
        url = f"http://{self.link.upstream_host}:{self.status_port}/status"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        return int(text.splitlines()[2].split()[0])

    def held(self, scheme: str) -> int:
        """Established connections to the exporters' ports of `scheme`."""
        base = PLAIN_BASE if scheme == "http" else TLS_BASE
        out = subprocess.run(self.link.upstream_command(
            [tool("ss"), "-tnH", "state", "established",
             f"( sport >= :{base} and sport < :{base + self.targets} )"]),
            capture_output=True, text=True, check=True).stdout
        return len([line for line in out.splitlines() if line.strip()])

    def stop(self) -> None:
        if self.child:
            self.child.terminate()
            self.child.wait(timeout=10)


def start_tunnel(work: Path, fleet: Fleet, scheme: str) -> tuple[subprocess.Popen, int]:
    base = PLAIN_BASE if scheme == "http" else TLS_BASE
    lines = [TUNNEL_CONF, "tunnel:\n"]
    if scheme == "https":
        lines.append(f"  server_scheme: https\n  tls_ca_file: {work / 'ca.crt'}\n"
                     "  tls_server_name: exporter\n")
    lines.append("  targets:\n")
    for i in range(fleet.targets):
        lines.append(f"  - name: t{i:04}\n    address: {fleet.link.upstream_host}:{base + i}\n")
    conf = work / f"tunnel-{scheme}.yaml"
    conf.write_text("".join(lines))
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "LISTEN_ADDRESS": "127.0.0.1", "LISTEN_PORT": str(port),
           "METRICS_PORT": str(free_port()), "RUST_LOG": "warn"}
    log = open(work / f"tunnel-{scheme}.log", "w")
    child = subprocess.Popen([str(TUNNEL), "-c", str(conf)], env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, limit=30)
    return child, port


def start_haproxy(work: Path, fleet: Fleet, scheme: str) -> tuple[subprocess.Popen, int]:
    base = PLAIN_BASE if scheme == "http" else TLS_BASE
    port = free_port()
    tls = f" ssl verify required ca-file {work / 'ca.crt'} sni str(exporter)" if scheme == "https" else ""
    backends = "".join(
        f"backend t{i:04}\n    server s {fleet.link.upstream_host}:{base + i}{tls}\n"
        for i in range(fleet.targets))
    conf = work / f"haproxy-{scheme}.cfg"
    conf.write_text(f"""{haproxy_head(8192)}
frontend fe
    bind 127.0.0.1:{port}
    use_backend %[url_param(target)]
{backends}""")
    log = open(work / f"haproxy-{scheme}.log", "w")
    child = subprocess.Popen([tool("haproxy"), "-f", str(conf), "-db"], stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, limit=30)
    return child, port


async def scrape_loop(port: int, names: list[str], interval: float, stop_at: float,
                      counts: dict) -> None:
    """One client connection scraping `names` in turn, each once per `interval`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    gap = interval / len(names)
    next_at = time.monotonic()
    i = 0
    try:
        while time.monotonic() < stop_at:
            name = names[i % len(names)]
            i += 1
            writer.write(f"GET /metrics?target={name} HTTP/1.1\r\nHost: fleet\r\n"
                         "Accept-Encoding: gzip\r\nUser-Agent: fleet-bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
            await reader.readexactly(length)
            counts["done"] += 1
            if status != 200:
                counts["bad"] += 1
            next_at += gap
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                counts["late"] += 1
    finally:
        writer.close()


def scrape(port: int, targets: int, interval: float, seconds: float, counts: dict) -> None:
    """Every target scraped once per `interval` for `seconds`, over CLIENT_CONNECTIONS."""
    names = [f"t{i:04}" for i in range(targets)]
    shares = [names[c::CLIENT_CONNECTIONS] for c in range(CLIENT_CONNECTIONS)]

    async def run() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(scrape_loop(port, share, interval, stop_at, counts)
                               for share in shares if share))

    asyncio.run(run())


def measure(work: Path, fleet: Fleet, proxy: str, scheme: str, interval: float, seconds: float) -> dict:
    start = start_tunnel if proxy == "tunnel" else start_haproxy
    child, port = start(work, fleet, scheme)
    try:
        pin(child.pid, {0})
        os.sched_setaffinity(0, {0})
        counts = {"done": 0, "bad": 0, "late": 0}
        # Warm-up: every target scraped once, so connections and handshakes are made.
        scrape(port, fleet.targets, interval, interval + 1, counts)
        warm_bad = counts["bad"]
        counts = {"done": 0, "bad": 0, "late": 0}
        cpu0, accepted0 = cpu_ns(child.pid), fleet.accepted()
        peak = [0.0]

        async def watch() -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                peak[0] = max(peak[0], rss_mib(child.pid))
                await asyncio.sleep(0.5)

        import threading
        watcher = threading.Thread(target=lambda: asyncio.run(watch()))
        watcher.start()
        began = time.monotonic()
        scrape(port, fleet.targets, interval, seconds, counts)
        took = time.monotonic() - began
        watcher.join()
        cpu = (cpu_ns(child.pid) - cpu0) / 1e9
        # The status request itself is one accepted connection.
        new_connections = fleet.accepted() - accepted0 - 1
        held = fleet.held(scheme)
        return {
            "proxy": proxy, "scheme": scheme, "scrapes": counts["done"], "errors": counts["bad"] + warm_bad,
            "late": counts["late"], "seconds": round(took, 1),
            "rate": round(counts["done"] / took),
            "cpu_us_per_scrape": round(cpu / max(counts["done"], 1) * 1e6, 1),
            "peak_rss_mib": round(peak[0], 1),
            "exporter_connections_held": held,
            "new_exporter_connections_per_minute": round(new_connections * 60 / took, 1),
        }
    finally:
        child.terminate()
        reap(child, limit=10)


def summarize(runs: list[dict]) -> list[dict]:
    """One row per proxy and scheme from interleaved rounds: medians, the worst of the counts
    that must be zero, and the tunnel's CPU and RSS against HAProxy's of the same round, whose
    median is the ratio reported (the machine's noise moves both proxies of one round alike)."""
    rows = []
    keys = list(dict.fromkeys((r["proxy"], r["scheme"]) for r in runs))
    for proxy, scheme in keys:
        mine = [r for r in runs if (r["proxy"], r["scheme"]) == (proxy, scheme)]
        theirs = {r["round"]: r for r in runs if (r["proxy"], r["scheme"]) == ("haproxy", scheme)}
        paired = [(r, theirs[r["round"]]) for r in mine if r["round"] in theirs]
        rows.append({
            "proxy": proxy, "scheme": scheme, "rounds": len(mine),
            "rate": round(statistics.median(r["rate"] for r in mine)),
            "cpu_us_per_scrape": round(statistics.median(r["cpu_us_per_scrape"] for r in mine), 1),
            "cpu_us_each_round": [r["cpu_us_per_scrape"] for r in mine],
            "cpu_vs_haproxy": round(statistics.median(
                r["cpu_us_per_scrape"] / h["cpu_us_per_scrape"] for r, h in paired), 2),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in mine),
            "rss_vs_haproxy": round(statistics.median(
                r["peak_rss_mib"] / h["peak_rss_mib"] for r, h in paired), 2),
            "exporter_connections_held": min(r["exporter_connections_held"] for r in mine),
            "new_exporter_connections_per_minute": max(
                r["new_exporter_connections_per_minute"] for r in mine),
            "errors": sum(r["errors"] for r in mine),
        })
    return rows


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Measured {meta['date']} on {machine_line(meta['machine'])}; {meta['targets']} exporters "
        f"(one nginx, {meta['targets']} ports per scheme) behind a veth pair, each scraped every "
        f"{meta['interval']:g} s for {meta['duration']:g} s after a warm-up, gzip asked, over "
        f"{CLIENT_CONNECTIONS} client connections; one proxy thread; {meta['rounds']} rounds, the "
        "proxies taking turns within each. Figures are medians; a ratio is the median of the "
        "tunnel's figure over HAProxy's of the same round.",
        "",
        "| proxy | scheme | scrapes/s | CPU per scrape | each round | vs HAProxy | peak RSS "
        "| vs HAProxy | exporter connections held | new exporter connections (handshakes over "
        "TLS) per minute | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        each = ", ".join(f"{c:g}" for c in r["cpu_us_each_round"])
        lines.append(
            f"| {r['proxy']} | {r['scheme']} | {r['rate']:,} | {r['cpu_us_per_scrape']} us | {each} "
            f"| {r['cpu_vs_haproxy']:.2f}x | {r['peak_rss_mib']} MiB | {r['rss_vs_haproxy']:.2f}x "
            f"| {r['exporter_connections_held']:,} | {r['new_exporter_connections_per_minute']} "
            f"| {r['errors']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes of a target")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every proxy and scheme, taken in turns; figures are medians")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results")
    args = parser.parse_args()
    if not TUNNEL.is_file():
        sys.exit(f"{TUNNEL} is missing: run benches/fleet.sh, which builds it")
    if os.geteuid() != 0:
        sys.exit("the fleet bench makes a network namespace: run it as root")
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "targets": args.targets,
            "interval": args.interval, "duration": args.duration, "rounds": args.rounds}
    runs = []
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp, Link("veth") as link:
        work = Path(tmp)
        certificates(work, link.upstream_host)
        fleet = Fleet(work, link, args.targets)
        fleet.start()
        try:
            for round_ in range(args.rounds):
                for scheme in ("http", "https"):
                    for proxy in in_turn(round_, ("haproxy", "tunnel")):
                        result = measure(work, fleet, proxy, scheme, args.interval, args.duration)
                        result["round"] = round_
                        print(json.dumps(result), flush=True)
                        runs.append(result)
        finally:
            fleet.stop()
    rows = summarize(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fleet.json").write_text(
        json.dumps({"meta": meta, "results": rows, "runs": runs}, indent=2) + "\n")
    (args.out / "fleet.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
