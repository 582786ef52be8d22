#!/usr/bin/env python3
"""Reverse mode against forward mode, side by side: the same page scraped through the tunnel
from an exporter it dials (forward mode), and from an exporter whose client polls it (reverse
mode, PushProx's protocol).

The exporter (nginx serving a captured node_exporter page) and, in reverse mode, its polling
client (examples/pushprox_client.rs, the tests' PushProx client) sit on another host: a
network namespace behind a veth pair that benches/lab.py creates and removes. Prometheus' side
is wrk on this host: requests/s at 32 connections and p50/p99 at 1, in alternating rounds,
absolute-form requests (`GET http://node-a:PORT/metrics`, as Prometheus sends them with
`proxy_url`) in reverse mode. Reverse mode costs a poll round trip and a push per scrape, and
one client carries one poll at a time: the ratio says what that costs.

Usage: benches/reverse.sh [--rounds N] [--duration SECONDS] [--out DIR]
Results: DIR/reverse.json and DIR/reverse.md.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import (  # noqa: E402
    ROOT, TUNNEL, TUNNEL_CONF, Lab, Link, free_port, machine, machine_line, wait_port, wrk,
)

CLIENT = ROOT / "target" / "release" / "examples" / "pushprox_client"
SCENARIOS = {
    "59 KB page": [],
    "59 KB page, gzip": ["Accept-Encoding: gzip"],
}
MODES = ["forward", "reverse"]


def start_reverse(lab: Lab, link: Link) -> tuple[int, int]:
    """The tunnel in reverse mode on this host, and the client polling it from the exporter's
    host; its proxy and poll ports."""
    port, poll_port = free_port(), free_port()
    conf = lab.work / "reverse.yaml"
    conf.write_text(TUNNEL_CONF)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LISTEN_ADDRESS": "0.0.0.0",
        "LISTEN_PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "POLL_PORT": str(poll_port),
        "RUST_LOG": "warn",
    }
    lab._spawn("reverse", [str(TUNNEL), "-c", str(conf)], env=env)
    wait_port(port)
    proxy_host = "127.0.0.1" if link.kind == "loopback" else link.host_ip
    lab._spawn("client", link.upstream_command([
        str(CLIENT), "--fqdn", "node-a", "--proxy", f"{proxy_host}:{poll_port}",
        "--resolve-to", link.upstream_host]))
    start = time.time()
    while time.time() - start < 10:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{poll_port}/clients", timeout=1) as r:
                if b"node-a" in r.read():
                    return port, poll_port
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the client did not register within 10 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benches" / "results")
    parser.add_argument("--link", choices=["veth", "loopback"], default="veth",
                        help="where the exporter and its client live (default: veth, another host)")
    args = parser.parse_args()
    for binary in (TUNNEL, CLIENT):
        if not binary.exists():
            sys.exit(f"{binary} is missing: run benches/reverse.sh, which builds it")
    meta = machine()
    results: dict = {s: {m: [] for m in MODES} for s in SCENARIOS}
    with Link(args.link) as link, tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp), link)
        try:
            lab.start_upstream()
            lab.start_proxy("tunnel")
            reverse_port, _ = start_reverse(lab, link)
            script = Path(tmp) / "absolute.lua"
            # Host is the target's, as Prometheus sends it (Pingora refuses an absolute-form
            # request whose Host names another); the scenario's -H headers are kept.
            target = f"node-a:{lab.ports['upstream']}"
            script.write_text(
                "local headers = {}\n"
                "init = function(args)\n"
                "  for k, v in pairs(wrk.headers) do headers[k] = v end\n"
                f'  headers["Host"] = "{target}"\n'
                "end\n"
                f'request = function() return wrk.format("GET", "http://{target}/metrics", headers) end\n')
            for r in range(args.rounds):
                for scenario, headers in SCENARIOS.items():
                    order = MODES if r % 2 == 0 else list(reversed(MODES))
                    for mode in order:
                        if mode == "forward":
                            port, extra = lab.ports["tunnel"], {}
                        else:
                            port, extra = reverse_port, {"script": str(script)}
                        thr = wrk(port, "metrics", headers, 32, args.duration, **extra)
                        lat = wrk(port, "metrics", headers, 1, args.duration, **extra)
                        results[scenario][mode].append({
                            "rps": thr["rps"], "p50_us": lat["p50_us"], "p99_us": lat["p99_us"],
                            "errors": thr["errors"] + lat["errors"],
                        })
                        print(f"round {r + 1} {scenario} {mode}: {thr['rps']:.0f} req/s, "
                              f"p50 {lat['p50_us']:.0f} us, errors {thr['errors'] + lat['errors']}",
                              flush=True)
        finally:
            lab.stop()
    summary = {
        s: {m: {k: statistics.median(x[k] for x in runs) for k in ("rps", "p50_us", "p99_us")}
            | {"errors": sum(x["errors"] for x in runs)} for m, runs in modes.items()}
        for s, modes in results.items()
    }
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_line(meta)}; exporter and client "
        f"{'behind a veth pair' if args.link == 'veth' else 'on loopback'}; {args.rounds} alternating rounds of {args.duration} s per figure, medians; "
        "one tunnel thread.",
        "",
        "| page | mode | req/s at 32 conns | vs forward | p50 at 1 conn | vs forward | p99 at 1 conn | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario, modes in summary.items():
        fwd = modes["forward"]
        for mode in MODES:
            m = modes[mode]
            lines.append(
                f"| {scenario} | {mode} | {m['rps']:,.0f} | {m['rps'] / fwd['rps']:.2f}x | "
                f"{m['p50_us']:.0f} us | {m['p50_us'] / fwd['p50_us']:.2f}x | {m['p99_us']:.0f} us | "
                f"{m['errors']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reverse.md").write_text("\n".join(lines) + "\n")
    (args.out / "reverse.json").write_text(json.dumps(
        {"machine": meta, "summary": summary, "runs": results}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
