"""What the chart tests share: rendering the chart with real Helm (as a cluster with or without
the Prometheus Operator's APIs would), a small PKI made by the real openssl, and real exporters
on free loopback ports."""

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import helm_python as helm
import yaml
from helm_python import _native
from ports import free_port

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "prometheus-tunnel"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
KUBE_VERSION = "v1.30.0"
# What a cluster with the Prometheus Operator (v0.65 or later) reports to Helm.
OPERATOR_APIS = [
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
    "monitoring.coreos.com/v1alpha1",
    "monitoring.coreos.com/v1alpha1/ScrapeConfig",
]
MINIMAL = {"settings": {"name": "server01", "serverIP": "10.0.0.3"}}
MONITOR_KINDS = {"ServiceMonitor", "PodMonitor", "ScrapeConfig", "PrometheusRule"}


def render_manifests(values: dict, api_versions=(), name="server01", namespace="monitoring") -> dict:
    """Template path -> rendered text, as `helm install` renders them on a cluster that serves
    `api_versions` besides Kubernetes' own (Helm's Go SDK; the wrapper's public render has no
    way to pass the cluster's API versions, its native call does)."""
    chart = helm.Chart.load(str(CHART))
    opts = {"name": name, "namespace": namespace, "is_install": True, "kube_version": KUBE_VERSION,
            "api_versions": list(api_versions)}
    rendered = _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts))
    return json.loads(rendered)


def render(values: dict, api_versions=OPERATOR_APIS, name="server01", namespace="monitoring") -> list[dict]:
    """Every object the chart renders for `values` (NOTES.txt left out)."""
    objects = []
    for path, text in sorted(render_manifests(values, api_versions, name, namespace).items()):
        if not path.endswith("NOTES.txt"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def notes(values: dict, api_versions=()) -> str:
    manifests = render_manifests(values, api_versions)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(objects: list[dict]) -> dict:
    return one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env_of(objects: list[dict]) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects)["env"]}


def ci_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: run scripts/test.sh, or apt-get install {package}"
    return path


def wait_port(port: int, limit: float = 15.0) -> None:
    start = time.time()
    while time.time() - start < limit:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def tunnel_binary() -> Path:
    """The release build (scripts/test.sh builds it before these tests), as the image ships it."""
    binary = ROOT / "target" / "release" / "prometheus-tunnel"
    assert binary.exists(), "the tunnel is not built: run scripts/test.sh (cargo build --release) first"
    return binary


class Pki:
    """One CA (openssl), a server certificate for every name the tests use, and a client one."""

    SERVER_NAMES = ["localhost", "*.monitoring.svc", "vm-db-01.internal.example", "db-01.dmz.internal"]

    def __init__(self, directory: Path):
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        openssl = tool("openssl", "openssl")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

        def run(*args):
            subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

        run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=chart test CA")
        sans = ",".join([f"DNS:{n}" for n in self.SERVER_NAMES] + ["IP:127.0.0.1"])
        (directory / "server.ext").write_text(f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        (directory / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
        for name, ext in (("server", "server.ext"), ("client", "client.ext")):
            run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
            run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", ext)

    def read(self, name: str) -> bytes:
        return (self.dir / name).read_bytes()

    def path(self, name: str) -> str:
        return str(self.dir / name)


class Exporter:
    """A real exporter: Python's HTTP server with one page, over TLS (tests/support) if asked."""

    def __init__(self, work: Path, pki: Pki | None = None, client_ca: str | None = None):
        work.mkdir(parents=True, exist_ok=True)
        page = work / "metrics"
        page.write_text("node_chart_test_up 1\n")
        self.page = page.read_text()
        if pki is None:
            self.port = free_port()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1", "--directory", str(work)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            args = [sys.executable, str(ROOT / "tests" / "support" / "tls_exporter.py"),
                    pki.path("server.crt"), pki.path("server.key"), str(page)]
            if client_ca:
                args.append(client_ca)
            self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.port = int(self.process.stdout.readline())
        wait_port(self.port)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
