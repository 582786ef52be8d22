"""The benches' lab: an nginx upstream serving exporter pages, the proxies compared (the tunnel,
HAProxy, nginx) each with one thread or worker, and the link between them and the upstream.

The link is loopback, or (as a real exporter on another host would be) a veth pair into a
network namespace that the lab creates and removes itself, MTU 1500, optionally with a delay
added by `tc netem` where the kernel has it. Every figure is recorded with the machine's CPU
model and kernel.
"""

import gzip
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# free_port: one for the benches and the Python tests, which hit the same port reuse.
sys.path.insert(0, str(ROOT / "tests" / "support"))
from ports import free_port  # noqa: E402,F401

PAGE = ROOT / "benches" / "node_exporter_page.txt"
TUNNEL = ROOT / "target" / "release" / "prometheus-tunnel"

# The tunnel's Pingora conf in every bench: one thread, as the other proxies get; a quick stop.
TUNNEL_CONF = "version: 1\nthreads: 1\ngrace_period_seconds: 0\ngraceful_shutdown_timeout_seconds: 1\n"


def tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if not path:
        sys.exit(f"{name} is not installed: run benches/run.sh, which installs it")
    return path


def wait_port(port: int, host: str = "127.0.0.1", limit: float = 10.0) -> None:
    start = time.time()
    while time.time() - start < limit:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def nginx_conf(work: Path, name: str, http_body: str) -> str:
    """An nginx conf: one worker in the foreground, no access log, long keep-alive."""
    return f"""
worker_processes 1;
daemon off;
pid {work}/{name}.pid;
error_log {work}/{name}.err warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
{http_body}
}}
"""


def haproxy_head(maxconn: int | None) -> str:
    """HAProxy's `global` and `defaults` in every bench: one thread, keep-alive both ways and
    server connections shared between clients; `maxconn` None lets HAProxy derive one from its
    open-file limit."""
    limit = f"    maxconn {maxconn}\n" if maxconn else ""
    return f"""
global
    nbthread 1
{limit}defaults
    mode http
{limit}    timeout connect 5s
    timeout client 60s
    timeout server 30s
    option http-keep-alive
    http-reuse always"""


def tunnel_env(upstream_host: str, upstream_port: int, port: int) -> dict[str, str]:
    """The tunnel's environment: the upstream, the proxy port `port`, a free metrics port."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "SERVER_IP": upstream_host,
        "SERVER_PORT": str(upstream_port),
        "LISTEN_ADDRESS": "127.0.0.1",
        "LISTEN_PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "RUST_LOG": "warn",
    }


def machine() -> dict[str, str]:
    """The CPU model, core count and kernel the figures were measured on."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "arch": platform.machine()}


def machine_line(m: dict[str, str]) -> str:
    return f"{m['cpu']}, {m['cores']} cores, {m['arch']}, Linux {m['kernel']}"


class Link:
    """Where the upstream lives: on loopback, or behind a veth pair in a network namespace of
    its own (created on enter, removed on exit, whatever happens in between)."""

    def __init__(self, kind: str, delay_ms: float = 0.0):
        if kind not in ("loopback", "veth"):
            raise ValueError(f"link {kind!r}: expected loopback or veth")
        self.kind = kind
        self.delay_ms = delay_ms
        # The whole pid, so that a stale namespace is known by its dead process (`remove_stale`).
        tag = os.getpid()
        self.netns = f"ptbench{tag}"
        self.host_if = f"ptbh{tag}"
        self.ns_if = f"ptbn{tag}"
        third = tag % 250 + 1
        self.host_ip = f"10.203.{third}.1"
        self.upstream_host = "127.0.0.1" if kind == "loopback" else f"10.203.{third}.2"

    @property
    def name(self) -> str:
        if self.kind == "loopback":
            return "loopback"
        return f"veth, {self.delay_ms:g} ms delay" if self.delay_ms else "veth"

    @staticmethod
    def remove_stale() -> None:
        """Removes the namespaces and veth ends of earlier benches that died before removing
        theirs (their process is gone): one left on the same /30 would take this run's route."""
        ip = tool("ip")
        listed = subprocess.run([ip, "netns", "list"], capture_output=True, text=True).stdout
        listed += subprocess.run([ip, "-o", "link", "show"], capture_output=True, text=True).stdout
        for tag in sorted({int(t) for t in re.findall(r"\bptb(?:ench|h)(\d+)\b", listed)}):
            if tag == os.getpid() or Path(f"/proc/{tag}").exists():
                continue
            subprocess.run([ip, "netns", "del", f"ptbench{tag}"], capture_output=True)
            subprocess.run([ip, "link", "del", f"ptbh{tag}"], capture_output=True)

    def __enter__(self) -> "Link":
        if self.kind == "loopback":
            return self
        self.remove_stale()
        ip = tool("ip")
        steps = [
            [ip, "netns", "add", self.netns],
            [ip, "link", "add", self.host_if, "mtu", "1500", "type", "veth", "peer", "name", self.ns_if,
             "mtu", "1500"],
            [ip, "link", "set", self.ns_if, "netns", self.netns],
            [ip, "addr", "add", f"{self.host_ip}/30", "dev", self.host_if],
            [ip, "link", "set", self.host_if, "up"],
            [ip, "netns", "exec", self.netns, ip, "addr", "add", f"{self.upstream_host}/30", "dev", self.ns_if],
            [ip, "netns", "exec", self.netns, ip, "link", "set", self.ns_if, "up"],
            [ip, "netns", "exec", self.netns, ip, "link", "set", "lo", "up"],
        ]
        try:
            for step in steps:
                subprocess.run(step, check=True, capture_output=True, text=True)
            if self.delay_ms:
                subprocess.run([tool("tc"), "qdisc", "add", "dev", self.host_if, "root", "netem", "delay",
                                f"{self.delay_ms}ms"], check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as e:
            self.__exit__(None, None, None)
            raise RuntimeError(f"{' '.join(e.cmd)}: {e.stderr.strip()}") from e
        return self

    def __exit__(self, *exc) -> None:
        if self.kind == "loopback":
            return
        subprocess.run([tool("ip"), "netns", "del", self.netns], capture_output=True)
        subprocess.run([tool("ip"), "link", "del", self.host_if], capture_output=True)

    def upstream_command(self, cmd: list[str]) -> list[str]:
        """`cmd` run where the upstream lives."""
        if self.kind == "loopback":
            return cmd
        return [tool("ip"), "netns", "exec", self.netns] + cmd

    @staticmethod
    def netem_available() -> tuple[bool, str]:
        """Whether `tc netem` works on this kernel (it needs the sch_netem module)."""
        probe = Link("veth")
        probe.netns, probe.host_if, probe.ns_if = "ptbnetem", "ptbnetemh", "ptbnetemn"
        try:
            with probe:
                result = subprocess.run([tool("tc"), "qdisc", "add", "dev", probe.host_if, "root", "netem",
                                         "delay", "1ms"], capture_output=True, text=True)
        except RuntimeError as e:
            return False, str(e)
        return result.returncode == 0, result.stderr.strip()


class Lab:
    """The upstream (behind `link`) and the proxies, each a child process on free ports."""

    def __init__(self, work: Path, link: Link, extra_tunnels: dict[str, str] | None = None,
                 extra_conf: dict[str, str] | None = None):
        self.work = work
        self.link = link
        self.extra_tunnels = extra_tunnels or {}
        self.extra_conf = extra_conf or {}
        self.children: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        # HAProxy's `maxconn`; None lets it derive one from its open-file limit.
        self.haproxy_maxconn: int | None = 8192

    def start_upstream(self) -> None:
        root = write_pages(self.work)
        page = PAGE.read_bytes()
        big = (page * (5 * 1024 * 1024 // len(page) + 1))[: 5 * 1024 * 1024]
        (root / "big").write_bytes(big)
        port = free_port()
        conf = self.work / "upstream.conf"
        conf.write_text(nginx_conf(self.work, "upstream", f"""
    gzip_static on;
    default_type "text/plain; version=0.0.4";
    server {{ listen {self.link.upstream_host}:{port}; root {root}; }}"""))
        self._spawn("upstream", self.link.upstream_command(
            [tool("nginx"), "-c", str(conf), "-e", str(self.work / "upstream.err")]))
        self.ports["upstream"] = port
        wait_port(port, self.link.upstream_host)

    def start_proxy(self, name: str) -> None:
        up_host, up = self.link.upstream_host, self.ports["upstream"]
        port = free_port()
        if name == "tunnel" or name in self.extra_tunnels:
            conf = self.work / f"{name}.yaml"
            conf.write_text(TUNNEL_CONF + self.extra_conf.get(name, ""))
            binary = self.extra_tunnels.get(name, str(TUNNEL))
            self._spawn(name, [binary, "-c", str(conf)], env=tunnel_env(up_host, up, port))
        elif name in ("haproxy", "haproxy-splice"):
            # Splicing takes a pipe (two descriptors) per connection: a lower `maxconn` keeps
            # HAProxy under the open-file limit.
            splice = "\n    option splice-response" if name == "haproxy-splice" else ""
            maxconn = 4096 if splice else self.haproxy_maxconn
            conf = self.work / f"{name}.cfg"
            conf.write_text(f"""{haproxy_head(maxconn)}{splice}
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server up {up_host}:{up}
""")
            self._spawn(name, [tool("haproxy"), "-f", str(conf), "-db"])
        elif name == "nginx":
            conf = self.work / "nginx-proxy.conf"
            conf.write_text(nginx_conf(self.work, "proxy", f"""
    upstream up {{ server {up_host}:{up}; keepalive 64; }}
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

    def restart_proxy(self, name: str) -> None:
        """Stops proxy `name` and starts it afresh (on a new port), holding no connection to
        the upstream."""
        child = self.children.pop(name)
        child.send_signal(signal.SIGINT)
        reap(child)
        self.start_proxy(name)

    def _spawn(self, name: str, cmd: list[str], env=None) -> None:
        log = open(self.work / f"{name}.log", "w")
        self.children[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> None:
        for child in self.children.values():
            child.send_signal(signal.SIGINT)
        for child in self.children.values():
            reap(child)


def reap(child: subprocess.Popen, limit: float = 5.0) -> None:
    """Waits up to `limit` seconds for `child`, already told to stop, to exit; kills it if it
    has not."""
    try:
        child.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def write_pages(work: Path) -> Path:
    """`work`/www with the exporter's page, plain (`metrics`) and gzip-encoded (`metrics.gz`,
    for nginx's gzip_static); readable by nginx's workers, which run as an unprivileged user
    when started as root."""
    work.chmod(0o755)
    root = work / "www"
    root.mkdir(mode=0o755)
    page = PAGE.read_bytes()
    (root / "metrics").write_bytes(page)
    (root / "metrics.gz").write_bytes(gzip.compress(page, 6))
    return root


def openssl(work: Path, *args: str) -> None:
    subprocess.run([tool("openssl"), *args], cwd=work, check=True, capture_output=True)


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` and of its descendants onto `cpus`."""
    for p in family(pid):
        for task in Path(f"/proc/{p}/task").iterdir():
            os.sched_setaffinity(int(task.name), cpus)


def cpu_ns(pid: int) -> int:
    """CPU time of `pid`, its threads and descendants, in nanoseconds, from the scheduler's own
    account (/proc/PID/task/TID/schedstat): exact, where /proc/PID/stat counts 10 ms ticks,
    too coarse for a proxy that is mostly idle between requests."""
    total = 0
    for p in family(pid):
        for task in Path(f"/proc/{p}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass
    return total


def family(pid: int) -> list[int]:
    """`pid` and its descendants (nginx's workers do its work, not its master)."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:
            continue  # a thread that ended since the listing: none of its own left
        for child in children:
            pids.extend(family(int(child)))
    return pids


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in family(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    total = 0
    for p in family(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def in_turn(round_: int, names: list | tuple) -> list:
    """`names` in the order round `round_` takes them: as given, then reversed, in turn, so that
    no proxy always runs first, on a machine just come out of idle or another's load."""
    return list(names) if round_ % 2 == 0 else list(reversed(names))


def warm_up(ports: list[int], connections: int = 32) -> None:
    """Load at the level measured, on each of `ports`: their connections and caches, and the
    machine itself. With 1 s at 8 connections the first figure of a run, the first round's first
    turn, came out 10-20% low (the tunnel's 59 KB page at 29,647 and 30,284 req/s in two runs,
    against 35,000-37,000 in their later rounds)."""
    for port in ports:
        wrk(port, "metrics", [], connections, 2)


def wrk(port: int, path: str, headers: list[str], connections: int, seconds: int,
        watch_pid: int | None = None, script: str | None = None) -> dict:
    """One wrk run; with `watch_pid`, also the peak RSS of that process (and its children)
    sampled every 0.2 s while wrk runs; with `script`, wrk's Lua script (which may write
    its own request line)."""
    cmd = [tool("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
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
