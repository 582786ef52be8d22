"""The pod starts, for every value set: the built binary runs with exactly the arguments,
environment and files the rendered Deployment gives its container (ConfigMap and Secret keys
written where they are mounted), answers /readyz, and serves a scrape made the way the rendered
ScrapeConfig makes it (scheme, CA, client certificate, credentials from the same Secrets).

No cluster runs here, so two things are mapped: every mount path to a directory of the test
(a file the pod would not have, because nothing mounts it, is still missing here), and the
exporter's address to a real exporter on loopback. The Secrets' contents are the test's: the
chart only names them."""

import json
import os
import re
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

from helpers import (CI_VALUES, Exporter, Pki, by_kind, ci_values, container, free_port, one, render,
                     tool, tunnel_binary)

NAMESPACE = "monitoring"


def secrets_for(pki: Pki) -> dict[str, dict[str, bytes]]:
    """The contents of every Secret the ci/ value sets name."""
    tls_pair = {"tls.crt": pki.read("server.crt"), "tls.key": pki.read("server.key"), "ca.crt": pki.read("ca.crt")}
    client_pair = {"tls.crt": pki.read("client.crt"), "tls.key": pki.read("client.key"), "ca.crt": pki.read("ca.crt")}
    return {
        # To the exporter: its CA, and the tunnel's client certificate for mutual TLS.
        "exporter-tls": client_pair,
        "db-01-tls": client_pair,
        "vm-02-tls": {"ca.crt": pki.read("ca.crt")},
        "exporter-token": {"token": b"exporter-secret-7f2\n"},
        "db-01-token": {"token": b"db-secret-c41\n"},
        "win-02-basic-auth": {"password": b"win-secret-9d0\n"},
        # A proxy URL: "none" means a direct connection, which loopback exporters need.
        "egress-proxy": {"url": b"none"},
        # The proxy port's own TLS and credentials, and Prometheus' client certificate.
        "tunnel-serving-cert": tls_pair,
        "tunnel-client-token": {"token": b"client-secret-3a8\n"},
        "tunnel-client-password": {"password": b"client-secret-5e6\n"},
        "prometheus-scrape-client": client_pair,
        # The poll port's TLS (reverse mode), and the CA of the clients' certificates.
        "tunnel-poll-cert": tls_pair,
        # The agent port's TLS (agent mode), and the CA of the agents' certificates.
        "tunnel-agent-port": {"tls.crt": pki.read("server.crt"), "tls.key": pki.read("server.key"),
                              "agents-ca.crt": pki.read("ca.crt")},
    }


def runnable(values: dict, exporters: dict[str, int]) -> dict:
    """`values` with the exporters' addresses on loopback and the ports free; nothing else."""
    values = yaml.safe_load(yaml.safe_dump(values))
    settings = values.setdefault("settings", {})
    settings["listenAddress"] = "127.0.0.1"
    taken: set[int] = set()

    def distinct_port() -> int:
        # A port just freed may come back at once: each listener gets one of its own.
        port = free_port()
        while port in taken:
            port = free_port()
        taken.add(port)
        return port

    settings["listenPort"] = distinct_port()
    settings.setdefault("metrics", {})["port"] = distinct_port()
    def exporter(scheme: str, client_cert: bool) -> int:
        return exporters["https-mtls" if client_cert else scheme]

    if settings.get("serverIP"):
        settings["serverIP"] = "127.0.0.1"
        settings["serverPort"] = exporter(settings.get("scheme", "http"), bool(settings.get("tls", {}).get("certKey")))
    for target in values.get("targets", []):
        scheme = target.get("scheme", settings.get("scheme", "http"))
        target["address"] = f"127.0.0.1:{exporter(scheme, bool(target.get('tls', {}).get('cert_file')))}"
    if settings.get("poll", {}).get("port"):
        settings["poll"]["port"] = distinct_port()
    if settings.get("agent", {}).get("port"):
        settings["agent"]["port"] = distinct_port()
    access = settings.get("access", {})
    if access.get("allowedCidrs"):
        # The scrape comes from loopback here, as it comes from Prometheus' pod there.
        access["allowedCidrs"] = access["allowedCidrs"] + ["127.0.0.0/8"]
    return values


class Pod:
    """The container of the rendered Deployment, run as a process."""

    def __init__(self, objects: list[dict], secrets: dict, root: Path):
        self.objects = objects
        deployment = one(objects, "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        c = container(objects)
        configmaps = {o["metadata"]["name"]: o["data"] for o in by_kind(objects, "ConfigMap")}
        volumes = {v["name"]: v for v in pod["volumes"]}
        # Each mount path becomes a directory under `root`, filled as Kubernetes would fill it.
        self.mounts = {m["mountPath"]: root / m["mountPath"].strip("/") for m in c["volumeMounts"]}
        for mount in c["volumeMounts"]:
            local = self.mounts[mount["mountPath"]]
            local.mkdir(parents=True, exist_ok=True)
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                for key, text in configmaps[volume["configMap"]["name"]].items():
                    (local / key).write_text(self.local(text))
            elif "secret" in volume:
                name = volume["secret"]["secretName"]
                assert name in secrets, f"the test has no contents for Secret {name}"
                for key, data in secrets[name].items():
                    (local / key).write_bytes(data)
        env = {"PATH": os.environ.get("PATH", "")}
        for item in c["env"]:
            if "value" in item:
                env[item["name"]] = self.local(item["value"])
            elif "fieldRef" in item["valueFrom"]:
                # The downward API: the pod's own name.
                assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
                env[item["name"]] = "server01-prometheus-tunnel-7d9c5-x2vq4"
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = secrets[ref["name"]][ref["key"]].decode()
        self.args = [self.local(a) for a in c.get("args", [])]
        self.env = env
        self.log = root / "tunnel.log"
        self.process = subprocess.Popen([str(tunnel_binary()), *self.args], env=env,
                                        stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        self.metrics_port = int(env["METRICS_PORT"])
        self.proxy_port = int(env["LISTEN_PORT"])

    def local(self, text: str) -> str:
        """`text` with every mount path (the longest that fits, at a path boundary) replaced by
        its directory here, in one pass."""
        if not self.mounts:
            return text
        paths = sorted(self.mounts, key=len, reverse=True)
        pattern = re.compile("(" + "|".join(re.escape(p) for p in paths) + r")(?=/|\b|$)")
        return pattern.sub(lambda m: str(self.mounts[m.group(1)]), text)

    def ready(self, limit: float = 20.0) -> None:
        start = time.time()
        while time.time() - start < limit:
            assert self.process.poll() is None, f"the pod's process exited:\n{self.log.read_text()}"
            if curl(f"http://127.0.0.1:{self.metrics_port}/readyz")[0] == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"/readyz was not 200 within {limit} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def curl(url: str, *args: str) -> tuple[int, str]:
    out = subprocess.run([tool("curl", "curl"), "-sS", "-o", "-", "-w", "\n%{http_code}", *args, url],
                         capture_output=True, text=True, timeout=30)
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body + out.stderr


def scrape_as_prometheus(objects: list[dict], pod: Pod, secrets: dict, root: Path) -> list[tuple[int, str]]:
    """Each scrape the rendered ScrapeConfig makes, with its scheme, TLS and credentials, the
    Service's address mapped to the pod's proxy port."""
    # The exporter's ScrapeConfig; a reverse-mode release has one more, for the clients that poll,
    # and an agent-mode one for the agents' exporters.
    exporters = [o for o in by_kind(objects, "ScrapeConfig")
                 if not o["metadata"]["name"].endswith(("-polled", "-agents"))]
    assert len(exporters) == 1, f"{len(exporters)} ScrapeConfigs for the exporter"
    scrape = exporters[0]["spec"]
    args = []
    tls = scrape.get("tlsConfig")
    if tls:

        def secret_file(ref: dict, name: str) -> str:
            path = root / "prometheus" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(secrets[ref["name"]][ref["key"]])
            return str(path)

        args += ["--cacert", secret_file(tls["ca"]["secret"], "ca.crt")]
        # The certificate must be valid for the Service's name, which resolves to the pod here.
        args += ["--resolve", f"{tls['serverName']}:{pod.proxy_port}:127.0.0.1"]
        if "cert" in tls:
            args += ["--cert", secret_file(tls["cert"]["secret"], "client.crt"),
                     "--key", secret_file(tls["keySecret"], "client.key")]
    auth = scrape.get("authorization")
    if auth:
        token = secrets[auth["credentials"]["name"]][auth["credentials"]["key"]].decode().strip()
        args += ["-H", f"Authorization: {auth['type']} {token}"]
    basic = scrape.get("basicAuth")
    if basic:
        secret_objects = {o["metadata"]["name"]: o for o in by_kind(objects, "Secret")}
        user_ref, pass_ref = basic["username"], basic["password"]
        username = secret_objects[user_ref["name"]]["stringData"][user_ref["key"]]
        password = secrets[pass_ref["name"]][pass_ref["key"]].decode().strip()
        args += ["-u", f"{username}:{password}"]
    scheme = scrape.get("scheme", "HTTP").lower()
    host = tls["serverName"] if tls else "127.0.0.1"
    answers = []
    for group in scrape["staticConfigs"]:
        params = {k[len("__param_"):]: v for k, v in group.get("labels", {}).items() if k.startswith("__param_")}
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        for _ in group["targets"]:
            url = f"{scheme}://{host}:{pod.proxy_port}{scrape['metricsPath']}{query}"
            answers.append(curl(url, *args))
    return answers


def scrape_agents_as_prometheus(objects: list[dict], pod: Pod, lab: dict, root: Path) -> list[tuple[int, str]]:
    """Agent mode: an agent (the same binary, `agent`, the test CA's client certificate) dials
    the pod's agent port with the plain exporter; then each scrape the rendered agents'
    ScrapeConfig makes from the groups of /targets it reads."""
    pki = lab["pki"]
    conf = root / "agent.yaml"
    conf.write_text(
        "tunnel:\n"
        f"  tunnel_address: \"127.0.0.1:{pod.env['AGENT_PORT']}\"\n"
        f"  tunnel_ca_file: {pki.path('ca.crt')}\n"
        "  tunnel_server_name: localhost\n"
        f"  tunnel_client_cert_file: {pki.path('client.crt')}\n"
        f"  tunnel_client_key_file: {pki.path('client.key')}\n"
        "  targets:\n"
        f"    - name: site-node\n      address: 127.0.0.1:{lab['exporters']['http']}\n")
    agent = subprocess.Popen([str(tunnel_binary()), "agent", "-c", str(conf)],
                             env={"PATH": os.environ.get("PATH", "")},
                             stdout=subprocess.DEVNULL, stderr=open(root / "agent.log", "w"))
    try:
        scrape = one([o for o in by_kind(objects, "ScrapeConfig") if o["metadata"]["name"].endswith("-agents")],
                     "ScrapeConfig")["spec"]
        sd_url = urllib.parse.urlparse(scrape["httpSDConfigs"][0]["url"])
        keep = scrape["relabelings"][0]
        start, groups = time.time(), []
        while not groups and time.time() - start < 15:
            status, body = curl(f"http://127.0.0.1:{pod.metrics_port}{sd_url.path}")
            listed = json.loads(body) if status == 200 else []
            groups = [g for g in listed if g["labels"].get(keep["sourceLabels"][0]) == keep["regex"]]
            time.sleep(0.1)
        assert groups, f"no agent's exporter on /targets:\n{(root / 'agent.log').read_text()}"
        answers = []
        for group in groups:
            params = {k[len("__param_"):]: v for k, v in group["labels"].items() if k.startswith("__param_")}
            url = f"http://127.0.0.1:{pod.proxy_port}{scrape['metricsPath']}?{urllib.parse.urlencode(params)}"
            answers.append(curl(url))
        return answers
    finally:
        agent.kill()
        agent.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    pki = Pki(root / "pki")
    plain = Exporter(root / "plain")
    https = Exporter(root / "https", pki)
    # One that requires the tunnel's client certificate, for the value sets that give one.
    mtls = Exporter(root / "https-mtls", pki, client_ca=pki.path("ca.crt"))
    ports = {"http": plain.port, "https": https.port, "https-mtls": mtls.port}
    yield {"pki": pki, "exporters": ports, "page": plain.page}
    for exporter in (plain, https, mtls):
        exporter.stop()


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_the_pod_starts_and_serves_a_scrape(values_file, lab, tmp_path):
    values = runnable(ci_values(values_file), lab["exporters"])
    # A fleet's discovery is static here, so each target's scrape is in the ScrapeConfig.
    values.setdefault("monitor", {})["targetDiscovery"] = "static"
    objects = render(values)
    secrets = secrets_for(lab["pki"])
    pod = Pod(objects, secrets, tmp_path)
    try:
        pod.ready()
        agents_only = "AGENT_PORT" in pod.env and not values["settings"].get("serverIP") and not values.get("targets")
        if agents_only:
            answers = scrape_agents_as_prometheus(objects, pod, lab, tmp_path)
        else:
            answers = scrape_as_prometheus(objects, pod, secrets, tmp_path)
        assert answers, "the ScrapeConfig makes no scrape"
        for status, body in answers:
            assert (status, body) == (200, lab["page"]), f"{status} {body}\n{pod.log.read_text()}"
    finally:
        pod.stop()


def test_a_file_nothing_mounts_is_caught(lab, tmp_path):
    """The failure the old multi-target example hid: its conf named a CA file no volume held."""
    values = runnable(ci_values(CI_VALUES[0].with_name("multi-target-values.yaml")), lab["exporters"])
    del values["secretMounts"]
    pod = Pod(render(values), secrets_for(lab["pki"]), tmp_path)
    try:
        pod.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pod.stop()
        raise AssertionError("the tunnel started although its CA file is mounted nowhere")
    assert pod.process.returncode == 2
    assert "/etc/prometheus-tunnel/targets/vm-02/ca.crt" in pod.log.read_text()


def test_no_secret_lands_in_a_configmap(lab):
    """Targets name files for their secrets: the conf ConfigMap holds paths, never contents."""
    values = ci_values(CI_VALUES[0].with_name("fleet-secrets-values.yaml"))
    contents = [d.strip().decode() for s in secrets_for(lab["pki"]).values() for d in s.values()]
    for cm in by_kind(render(values), "ConfigMap"):
        text = yaml.safe_dump(cm)
        for secret in contents:
            if secret != "none":
                assert secret not in text
        assert "/etc/prometheus-tunnel/targets/" in text
