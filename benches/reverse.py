#!/usr/bin/env python3
"""The dial-out modes against forward mode, side by side: the same page scraped through the
tunnel from an exporter it dials (forward mode, over plain HTTP and over TLS 1.3: the agent's
link is always TLS), from an exporter whose agent dialled it
(agent mode: one HTTP/2 connection, a stream per scrape), and from an exporter whose client
polls it (reverse mode, PushProx's protocol).

The exporter (nginx serving a captured node_exporter page, and a 5 MB page), its agent
(`prometheus-tunnel agent`, mutual TLS with certificates made by openssl) and its polling
client (examples/pushprox_client.rs, the tests' PushProx client) sit on another host: a
network namespace behind a veth pair that benches/lab.py creates and removes. Prometheus' side
is wrk on this host: requests/s at 32 connections (8 for the 5 MB page) and p50/p99 at 1, in
rounds whose order of modes alternates; `?target=node-a` in agent mode, absolute-form requests
(`GET http://node-a:PORT/metrics`, as Prometheus sends them with `proxy_url`) in reverse mode.
Reverse mode costs a poll round trip and a push per scrape, and one client carries one poll at
a time; agent mode costs TLS and HTTP/2 framing on the link and none of that.

Usage: benches/reverse.sh [--rounds N] [--duration SECONDS] [--out DIR]
Results: DIR/reverse.json and DIR/reverse.md.
"""

import argparse
import os
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import (  # noqa: E402
    ROOT, TUNNEL, TUNNEL_CONF, Lab, Link, cpu_seconds, free_port, machine, machine_line,
    in_turn, nginx_conf, openssl, pin, tool, tunnel_env, wait_port, wrk,
)


CLIENT = ROOT / "target" / "release" / "examples" / "pushprox_client"
# (path, headers, connections for throughput)
SCENARIOS = {
    "59 KB page": ("metrics", [], 32),
    "59 KB page, gzip": ("metrics", ["Accept-Encoding: gzip"], 32),
    "5 MB page": ("big", [], 8),
}
MODES = ["forward", "forward-tls", "agent", "reverse"]


def make_certificates(work: Path, host_ip: str, upstream_ip: str) -> None:
    """A CA, a server certificate (the agent port's at `host_ip`, the TLS exporter's at
    `upstream_ip`) and the agent's (CN site-a)."""
    openssl(work, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench CA")
    for name, subject, ext in (
        ("server", "/CN=tunnel",
         f"subjectAltName=IP:{host_ip},IP:{upstream_ip},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("agent", "/CN=site-a", "extendedKeyUsage=clientAuth\n"),
    ):
        (work / f"{name}.ext").write_text(ext)
        openssl(work, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        openssl(work, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")


def start_forward_tls(lab: Lab, link: Link) -> int:
    """The exporter's page over TLS 1.3 too (a second nginx beside the first), and a tunnel in
    forward mode that verifies it: the baseline for agent mode, whose link is always TLS; the
    tunnel's proxy port."""
    work = lab.work / "pki"
    tls_port = free_port()
    conf = lab.work / "upstream-tls.conf"
    conf.write_text(nginx_conf(lab.work, "upstream-tls", f"""
    gzip_static on;
    default_type "text/plain; version=0.0.4";
    server {{
        listen {link.upstream_host}:{tls_port} ssl;
        ssl_certificate {work / 'server.crt'};
        ssl_certificate_key {work / 'server.key'};
        ssl_protocols TLSv1.3;
        root {lab.work / 'www'};
    }}"""))
    lab._spawn("upstream-tls", link.upstream_command(
        [tool("nginx"), "-c", str(conf), "-e", str(lab.work / "upstream-tls.err")]))
    wait_port(tls_port, link.upstream_host)
    port = free_port()
    env = tunnel_env(link.upstream_host, tls_port, port)
    env |= {"SERVER_SCHEME": "https", "TLS_CA_FILE": str(work / "ca.crt")}
    tconf = lab.work / "forward-tls.yaml"
    tconf.write_text(TUNNEL_CONF)
    lab._spawn("forward-tls", [str(TUNNEL), "-c", str(tconf)], env=env)
    wait_port(port)
    return port


def start_agent_mode(lab: Lab, link: Link) -> int:
    """The tunnel with an agent port on this host, and the agent dialling it from the
    exporter's host; the tunnel's proxy port."""
    work = lab.work / "pki"
    tunnel_ip = "127.0.0.1" if link.kind == "loopback" else link.host_ip
    port, agent_port, metrics_port = free_port(), free_port(), free_port()
    conf = lab.work / "agent-tunnel.yaml"
    conf.write_text(TUNNEL_CONF)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LISTEN_ADDRESS": "0.0.0.0",
        "LISTEN_PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        "AGENT_PORT": str(agent_port),
        "AGENT_TLS_CERT_FILE": str(work / "server.crt"),
        "AGENT_TLS_KEY_FILE": str(work / "server.key"),
        "AGENT_TLS_CLIENT_CA_FILE": str(work / "ca.crt"),
        "RUST_LOG": "warn",
    }
    lab._spawn("agent-tunnel", [str(TUNNEL), "-c", str(conf)], env=env)
    wait_port(port)
    agent_conf = lab.work / "agent.yaml"
    agent_conf.write_text(
        TUNNEL_CONF
        + "tunnel:\n"
        + f'  tunnel_address: "{tunnel_ip}:{agent_port}"\n'
        + f"  tunnel_ca_file: {work / 'ca.crt'}\n"
        + f"  tunnel_client_cert_file: {work / 'agent.crt'}\n"
        + f"  tunnel_client_key_file: {work / 'agent.key'}\n"
        + "  targets:\n"
        + f"    - name: node-a\n      address: {link.upstream_host}:{lab.ports['upstream']}\n")
    lab._spawn("agent", link.upstream_command(
        [str(TUNNEL), "agent", "-c", str(agent_conf)]), env={"PATH": env["PATH"], "RUST_LOG": "warn"})
    start = time.time()
    while time.time() - start < 10:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/targets", timeout=1) as r:
                if b"node-a" in r.read():
                    return port
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the agent did not connect within 10 s")


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
    parser.add_argument("--no-pin", action="store_true",
                        help="let every process run on every CPU (by default, with 2 CPUs or "
                             "more, the exporter's host gets CPU 1 and this host CPU 0, as two "
                             "machines would)")
    args = parser.parse_args()
    for binary in (TUNNEL, CLIENT):
        if not binary.exists():
            sys.exit(f"{binary} is missing: run benches/reverse.sh, which builds it")
    meta = machine()
    pinned = not args.no_pin and (os.cpu_count() or 1) >= 2
    if pinned:
        # Children inherit it: the tunnels and wrk, this host's side.
        os.sched_setaffinity(0, {0})
    results: dict = {s: {m: [] for m in MODES} for s in SCENARIOS}
    with Link(args.link) as link, tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp), link)
        try:
            lab.start_upstream()
            lab.start_proxy("tunnel")
            reverse_port, _ = start_reverse(lab, link)
            (lab.work / "pki").mkdir()
            make_certificates(lab.work / "pki", "127.0.0.1" if link.kind == "loopback" else link.host_ip,
                              link.upstream_host)
            agent_port = start_agent_mode(lab, link)
            tls_port = start_forward_tls(lab, link)
            if pinned:
                for name in ("upstream", "upstream-tls", "agent", "client"):
                    pin(lab.children[name].pid, {1})
            tunnels = {"forward": lab.children["tunnel"].pid,
                       "forward-tls": lab.children["forward-tls"].pid,
                       "agent": lab.children["agent-tunnel"].pid,
                       "reverse": lab.children["reverse"].pid}
            # What runs beside the exporter: nothing, the agent, the polling client.
            beside = {"agent": lab.children["agent"].pid, "reverse": lab.children["client"].pid}
            # Host is the target's, as Prometheus sends it (Pingora refuses an absolute-form
            # request whose Host names another); the scenario's -H headers are kept.
            target = f"node-a:{lab.ports['upstream']}"
            scripts = {}
            for path in {p for p, _, _ in SCENARIOS.values()}:
                script = Path(tmp) / f"absolute-{path}.lua"
                script.write_text(
                    "local headers = {}\n"
                    "init = function(args)\n"
                    "  for k, v in pairs(wrk.headers) do headers[k] = v end\n"
                    f'  headers["Host"] = "{target}"\n'
                    "end\n"
                    f'request = function() return wrk.format("GET", "http://{target}/{path}", headers) end\n')
                scripts[path] = str(script)
            for r in range(args.rounds):
                for scenario, (path, headers, conns) in SCENARIOS.items():
                    for mode in in_turn(r, MODES):
                        url, extra = path, {}
                        if mode == "forward":
                            port = lab.ports["tunnel"]
                        elif mode == "forward-tls":
                            port = tls_port
                        elif mode == "agent":
                            port, url = agent_port, f"{path}?target=node-a"
                        else:
                            port, extra = reverse_port, {"script": scripts[path]}
                        cpu = cpu_seconds(tunnels[mode])
                        side = cpu_seconds(beside[mode]) if mode in beside else 0.0
                        thr = wrk(port, url, headers, conns, args.duration, **extra)
                        done = max(thr["requests"], 1)
                        cpu_us = (cpu_seconds(tunnels[mode]) - cpu) / done * 1e6
                        side_us = ((cpu_seconds(beside[mode]) - side) / done * 1e6
                                   if mode in beside else 0.0)
                        lat = wrk(port, url, headers, 1, args.duration, **extra)
                        results[scenario][mode].append({
                            "rps": thr["rps"], "p50_us": lat["p50_us"], "p99_us": lat["p99_us"],
                            "tunnel_cpu_us": cpu_us, "beside_cpu_us": side_us,
                            "errors": thr["errors"] + lat["errors"],
                        })
                        print(f"round {r + 1} {scenario} {mode}: {thr['rps']:.0f} req/s, "
                              f"p50 {lat['p50_us']:.0f} us, errors {thr['errors'] + lat['errors']}",
                              flush=True)
        finally:
            lab.stop()
    summary = {
        s: {m: {k: statistics.median(x[k] for x in runs)
                for k in ("rps", "p50_us", "p99_us", "tunnel_cpu_us", "beside_cpu_us")}
            | {"errors": sum(x["errors"] for x in runs)} for m, runs in modes.items()}
        for s, modes in results.items()
    }
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_line(meta)}; exporter and client "
        f"{'behind a veth pair' if args.link == 'veth' else 'on loopback'}; {args.rounds} alternating rounds of {args.duration} s per figure, medians; "
        "one tunnel thread"
        + ("; the exporter's host (nginx, agent, polling client) on CPU 1, this host (tunnels, wrk) on CPU 0." if pinned else "; no CPU pinning."),
        "",
        "| page | mode | req/s (32 conns; 8 for 5 MB) | vs forward | vs forward-tls | vs reverse | p50 at 1 conn | vs forward | p99 at 1 conn | tunnel CPU per scrape | agent or client CPU per scrape | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario, modes in summary.items():
        fwd, tls, rev = modes["forward"], modes["forward-tls"], modes["reverse"]
        for mode in MODES:
            m = modes[mode]
            lines.append(
                f"| {scenario} | {mode} | {m['rps']:,.0f} | {m['rps'] / fwd['rps']:.2f}x | "
                f"{m['rps'] / tls['rps']:.2f}x | {m['rps'] / rev['rps']:.1f}x | "
                f"{m['p50_us']:.0f} us | {m['p50_us'] / fwd['p50_us']:.2f}x | {m['p99_us']:.0f} us | "
                f"{m['tunnel_cpu_us']:.0f} us | "
                + (f"{m['beside_cpu_us']:.0f} us" if mode in ("agent", "reverse") else "-")
                + f" | {m['errors']} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reverse.md").write_text("\n".join(lines) + "\n")
    (args.out / "reverse.json").write_text(json.dumps(
        {"machine": meta, "summary": summary, "runs": results}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
