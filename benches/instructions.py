#!/usr/bin/env python3
"""Instructions per scrape, counted by valgrind's callgrind: a repeatable figure, unlike time.

The tunnel runs under `valgrind --tool=callgrind` in front of the bench's nginx upstream twice,
once for a few scrapes and once for many, over one keep-alive connection; the difference of the
two totals divided by the difference of the scrape counts is what one scrape costs, with
start-up and shutdown cancelled out. The larger run's profile gives the functions that cost the
most per scrape, from the same difference.

Usage: benches/instructions.sh [--scrapes N] [--gzip]
(benches/instructions.sh installs valgrind and nginx when missing and builds the tunnel with
debug symbols in release mode.) Result: benches/results/instructions.md.
"""

import argparse
import http.client
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402  (the bench's upstream and helpers)


def scrape_under_callgrind(work: Path, upstream_port: int, scrapes: int, gzip: bool) -> tuple[int, Path]:
    """Runs the tunnel under callgrind for `scrapes` scrapes; returns its total instructions."""
    port = lab.free_port()
    conf = work / "tunnel.yaml"
    conf.write_text(lab.TUNNEL_CONF)
    out = work / f"callgrind.{scrapes}.out"
    log = open(work / f"tunnel.{scrapes}.log", "w")
    child = subprocess.Popen(
        [lab.tool("valgrind"), "--tool=callgrind", f"--callgrind-out-file={out}",
         str(lab.TUNNEL), "-c", str(conf)],
        env=lab.tunnel_env("127.0.0.1", upstream_port, port), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        lab.wait_port(port, limit=60)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Accept-Encoding": "gzip"} if gzip else {}
        for _ in range(scrapes):
            conn.request("GET", "/metrics", headers=headers)
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                sys.exit(f"scrape answered {answer.status}; log: {work / f'tunnel.{scrapes}.log'}")
        conn.close()
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=60)
    summary = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.M)
    if not summary:
        sys.exit(f"no instruction total in {out}")
    return int(summary.group(1)), out


def own_instructions(out: Path) -> dict[str, int]:
    """Instructions each function executed itself, from a callgrind profile."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(out)],
        capture_output=True, text=True, check=True,
    ).stdout
    functions: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)", line)
        if not m or "PROGRAM TOTALS" in m.group(2):
            continue
        # "file:function [object]" -> "function"
        name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2))
        name = re.sub(r"^(\?\?\?|[^:\s]*\.(rs|c|S|h)):", "", name)
        functions[name] = functions.get(name, 0) + int(m.group(1).replace(",", ""))
    return functions


def per_scrape_functions(small: Path, large: Path, scrapes: int, limit: int = 20) -> list[str]:
    """The functions that cost the most per scrape: the two runs' difference, so start-up
    work (loading CA roots, building the runtime) cancels out."""
    before, after = own_instructions(small), own_instructions(large)
    diff = {name: (after[name] - before.get(name, 0)) / scrapes for name in after}
    total = sum(v for v in diff.values() if v > 0)
    rows = []
    for name, per in sorted(diff.items(), key=lambda kv: -kv[1])[:limit]:
        rows.append(f"| {per:,.0f} | {per / total * 100:.1f}% | `{name[:110]}` |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scrapes", type=int, default=2000, help="scrapes in the larger run")
    parser.add_argument("--gzip", action="store_true", help="ask for the gzip-encoded page")
    parser.add_argument("--out", type=Path, default=lab.ROOT / "benches" / "results")
    parser.add_argument("--binary", type=Path, default=lab.TUNNEL,
                        help="another tunnel build to count (to compare two builds of a change)")
    args = parser.parse_args()
    lab.TUNNEL = args.binary.resolve()
    if not lab.TUNNEL.exists():
        sys.exit("build the tunnel first: benches/instructions.sh does")
    few = max(args.scrapes // 4, 100)
    with tempfile.TemporaryDirectory() as tmp:
        # Instruction counts do not depend on the link: the upstream stays on loopback.
        upstream = lab.Lab(Path(tmp), lab.Link("loopback"))
        try:
            upstream.start_upstream()
            port = upstream.ports["upstream"]
            small, small_out = scrape_under_callgrind(Path(tmp), port, few, args.gzip)
            large, large_out = scrape_under_callgrind(Path(tmp), port, args.scrapes, args.gzip)
            per_scrape = (large - small) / (args.scrapes - few)
            rows = per_scrape_functions(small_out, large_out, args.scrapes - few)
        finally:
            upstream.stop()
    page = "gzip-encoded 59 KB page" if args.gzip else "59 KB page"
    report = [
        f"Instructions per scrape ({page}, one keep-alive connection, callgrind, "
        f"{time.strftime('%Y-%m-%d')}): **{per_scrape:,.0f}**",
        f"(totals {small:,} for {few} scrapes and {large:,} for {args.scrapes}).",
        "",
        "Functions with the most instructions of their own per scrape (the two runs' difference):",
        "",
        "| instructions | share | function |",
        "|---|---|---|",
        *rows,
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    name = "instructions-gzip.md" if args.gzip else "instructions.md"
    (args.out / name).write_text("\n".join(report) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
