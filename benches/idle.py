#!/usr/bin/env python3
"""Silent connections, side by side: what 1,000 client connections that send nothing cost the
tunnel, HAProxy and nginx (RSS per connection, and what is left after they close), and how each
still answers a scrape (and the tunnel its /healthz) when those connections meet a low open-file
limit (`ulimit -n 256`).

Usage: benches/idle.sh [--connections N] [--fd-limit N] [--out DIR]
(benches/idle.sh installs nginx and haproxy when missing and builds the tunnel in release.)
Result: DIR/idle.md and DIR/idle.json.
"""

import argparse
import json
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import ROOT, TUNNEL, Lab, Link, machine, machine_line, rss_kib  # noqa: E402

PROXIES = ["tunnel", "haproxy", "nginx"]


def open_silent(port: int, count: int) -> list[socket.socket]:
    """Up to `count` connections that send nothing. A connect that fails or waits (a full
    accept queue) is skipped; after 20 in a row the rest are not tried."""
    conns, failed_in_a_row = [], 0
    for _ in range(count):
        try:
            conns.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
            failed_in_a_row = 0
        except OSError:
            failed_in_a_row += 1
            if failed_in_a_row >= 20:
                break
    return conns


def scrape(url: str, limit: float = 15.0) -> tuple[str, float]:
    """The status of one GET (or why it failed) and how long it took."""
    start = time.time()
    try:
        with urllib.request.urlopen(url, timeout=limit) as answer:
            answer.read()
            status = str(answer.status)
    except urllib.error.HTTPError as e:
        status = str(e.code)
    except OSError as e:
        status = f"failed ({e.__class__.__name__})"
    return status, time.time() - start


def memory(lab: Lab, proxy: str, count: int) -> dict:
    """RSS before, with `count` silent connections, and 3 s after they closed."""
    pid, port = lab.children[proxy].pid, lab.ports[proxy]
    for _ in range(20):  # warm: the proxy's exporter connection and first buffers
        scrape(f"http://127.0.0.1:{port}/metrics")
    time.sleep(1)
    before = rss_kib(pid)
    conns = open_silent(port, count)
    time.sleep(2)
    during = rss_kib(pid)
    for c in conns:
        c.close()
    time.sleep(3)
    after = rss_kib(pid)
    return {
        "connections": len(conns),
        "rss_before_kib": before,
        "rss_with_kib": during,
        "per_connection_kib": (during - before) / max(len(conns), 1),
        "rss_after_close_kib": after,
    }


def under_fd_limit(lab: Lab, proxy: str, count: int) -> dict:
    """With `count` silent connections open against a proxy started under a low open-file limit:
    how a scrape is answered, and (the tunnel) its /healthz."""
    port = lab.ports[proxy]
    conns = open_silent(port, count)
    time.sleep(1)
    status, took = scrape(f"http://127.0.0.1:{port}/metrics")
    result = {"connected": len(conns), "scrape": status, "scrape_s": took}
    if proxy == "tunnel":
        health, health_took = scrape(f"http://127.0.0.1:{lab.metrics_ports[proxy]}/healthz")
        result.update({"healthz": health, "healthz_s": health_took})
    for c in conns:
        c.close()
    time.sleep(1)
    status, took = scrape(f"http://127.0.0.1:{port}/metrics")
    result.update({"scrape_after": status, "scrape_after_s": took})
    return result


class LimitedLab(Lab):
    """The lab with each proxy started under `prlimit --nofile=N:N`, and the tunnel's metrics
    port remembered for /healthz."""

    def __init__(self, work: Path, link: Link, fd_limit: int | None):
        super().__init__(work, link)
        self.fd_limit = fd_limit
        if fd_limit:
            self.haproxy_maxconn = None
        self.metrics_ports: dict[str, int] = {}

    def _spawn(self, name: str, cmd: list[str], env=None) -> None:
        if env is not None and "METRICS_PORT" in env:
            self.metrics_ports[name] = int(env["METRICS_PORT"])
        if self.fd_limit and name != "upstream":
            cmd = ["prlimit", f"--nofile={self.fd_limit}:{self.fd_limit}", "--"] + cmd
        super()._spawn(name, cmd, env)


def run(link_name: str, fd_limit: int | None, count: int, step) -> dict:
    link = Link("veth") if link_name == "veth" else Link("loopback")
    with link, tempfile.TemporaryDirectory() as tmp:
        lab = LimitedLab(Path(tmp), link, fd_limit)
        try:
            lab.start_upstream()
            for proxy in PROXIES:
                lab.start_proxy(proxy)
            results = {}
            for proxy in PROXIES:
                print(f"{step.__name__}: {proxy}", flush=True)
                results[proxy] = step(lab, proxy, count)
            return results
        finally:
            lab.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--fd-limit", type=int, default=256)
    parser.add_argument("--link", choices=["veth", "loopback"], default="veth")
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results")
    args = parser.parse_args()
    if not TUNNEL.exists():
        sys.exit("build the tunnel first: benches/idle.sh does")
    mem = run(args.link, None, args.connections, memory)
    limited = run(args.link, args.fd_limit, args.connections, under_fd_limit)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": machine_line(machine()), "link": args.link,
            "connections": args.connections, "fd_limit": args.fd_limit}
    lines = [
        f"Measured {meta['date']} on {meta['machine']}; upstream: {args.link}; one thread or worker "
        "per proxy.",
        "",
        f"{args.connections} silent client connections (connected, nothing sent):",
        "",
        "| proxy | RSS before | with the connections | per connection | 3 s after they closed |",
        "|---|---|---|---|---|",
    ]
    for proxy, m in mem.items():
        lines.append(
            f"| {proxy} | {m['rss_before_kib'] / 1024:.1f} MiB | {m['rss_with_kib'] / 1024:.1f} MiB "
            f"| {m['per_connection_kib']:.1f} KiB | {m['rss_after_close_kib'] / 1024:.1f} MiB |")
    lines += [
        "",
        f"The same {args.connections} connections against each proxy started under "
        f"`ulimit -n {args.fd_limit}`:",
        "",
        "| proxy | connections accepted by the kernel | a scrape meanwhile | /healthz meanwhile "
        "| a scrape after they closed |",
        "|---|---|---|---|---|",
    ]
    for proxy, r in limited.items():
        lines_connected = r["connected"]
        health = f"{r['healthz']} in {r['healthz_s'] * 1000:.0f} ms" if "healthz" in r else "n/a"
        lines.append(
            f"| {proxy} | {lines_connected} | {r['scrape']} in {r['scrape_s'] * 1000:.0f} ms | {health} "
            f"| {r['scrape_after']} in {r['scrape_after_s'] * 1000:.0f} ms |")
    report = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "idle.md").write_text(report)
    (args.out / "idle.json").write_text(json.dumps({"meta": meta, "memory": mem, "fd_limit": limited},
                                                   indent=2))
    print(report)


if __name__ == "__main__":
    main()
