"""The Helm chart, rendered and linted by real Helm (helm-python-sdk embeds Helm's Go SDK), its
core objects validated with kubernetes-validate, its alert rules checked and unit-tested with
promtool, its dashboard's queries parsed by promtool."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "prometheus-tunnel"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
KUBE_VERSION = "1.30.0"
MINIMAL = {"settings": {"name": "server01", "serverIP": "10.0.0.3"}}
CORE_KINDS = {"Deployment", "Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget"}
MONITOR_KINDS = {"ServiceMonitor", "PodMonitor", "ScrapeConfig"}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is not installed: run scripts/test.sh, or apt-get install prometheus"
    return path


def render(values: dict, name: str = "server01", namespace: str = "monitoring") -> list[dict]:
    """Every object the chart renders for `values`."""
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


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


# === lint and schema ===


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_lint_strict_is_clean(values_file):
    report = helm.lint(str(CHART), ci_values(values_file), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert report["total_charts_linted"] == 1
    assert problems == [], problems


def test_lint_without_an_exporter_fails():
    report = helm.lint(str(CHART), None, strict=True)
    text = json.dumps(report)
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"]), text
    assert "serverIP" in text or "name" in text, text


@pytest.mark.parametrize(
    "settings, key",
    [
        ({"serverPort": 70000}, "serverPort"),
        ({"serverPort": "abc"}, "serverPort"),
        ({"scheme": "gopher"}, "scheme"),
        ({"upstreamTimeout": "soon"}, "upstreamTimeout"),
        ({"rules": "maybe"}, "rules"),
        ({"name": "bad name!"}, "name"),
        ({"serverIP": "http://10.0.0.3:9100"}, "serverIP"),
        ({"upstreamProxy": {"url": "http://user:secret@proxy:3128"}}, "url"),
        ({"serverPortt": 9100}, "serverPortt"),
        ({"access": {"allowedCidrs": ["everyone"]}}, "allowedCidrs"),
        ({"limits": {"maxConnections": 0}}, "maxConnections"),
    ],
)
def test_schema_refuses_bad_values_at_install(settings, key):
    values = {"settings": {**MINIMAL["settings"], **settings}}
    with pytest.raises(helm.HelmError) as refused:
        helm.Chart.load(str(CHART)).validate_schema(values)
    assert key in str(refused.value), str(refused.value)


def test_schema_refuses_an_unknown_monitor_kind():
    with pytest.raises(helm.HelmError) as refused:
        helm.Chart.load(str(CHART)).validate_schema({**MINIMAL, "monitor": {"kind": "Both"}})
    assert "kind" in str(refused.value)


# === core objects ===


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_core_objects_are_valid_kubernetes(values_file):
    objects = render(ci_values(values_file))
    core = [o for o in objects if o["kind"] in CORE_KINDS]
    assert {o["kind"] for o in core} >= {"Deployment", "Service", "ServiceAccount"}
    for obj in core:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    unexpected = {o["kind"] for o in objects} - CORE_KINDS - MONITOR_KINDS - {"PrometheusRule"}
    assert not unexpected, unexpected


def test_env_is_the_tunnels_contract():
    env = env_of(render(ci_values(CHART / "ci" / "default-values.yaml")))
    assert env == {
        "SERVER_IP": "192.168.0.3",
        "SERVER_PORT": "9182",
        "SERVER_SCHEME": "http",
        "LISTEN_ADDRESS": "0.0.0.0",
        "LISTEN_PORT": "8080",
        "METRICS_PORT": "9000",
        "UPSTREAM_TIMEOUT": "10s",
        "DEBUG": "false",
        "HEADER_READ_TIMEOUT": "10s",
        "IDLE_TIMEOUT": "120s",
        # MAX_CONNECTIONS is left to the tunnel, which fits it to the pod's memory limit.
    }


def test_ports_probes_and_service():
    objects = render({"settings": {**MINIMAL["settings"], "listenPort": 18080, "metrics": {"port": 19000}}})
    c = container(objects)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"exporter": 18080, "metrics": 19000}
    # Probes ask the tunnel on its metrics port, never the exporter.
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    svc = one(objects, "Service")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        "exporter": (18080, "exporter"),
        "metrics": (19000, "metrics"),
    }


def test_hardened_by_default():
    objects = render(MINIMAL)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # Pingora's pid and upgrade socket need a writable /tmp on the read-only root.
    assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_pdb_only_with_more_than_one_replica():
    assert by_kind(render(MINIMAL), "PodDisruptionBudget") == []
    pdb = one(render({**MINIMAL, "replicaCount": 3}), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1


def test_tls_proxy_credentials_and_conf_file():
    objects = render(ci_values(CHART / "ci" / "full-values.yaml"))
    env = env_of(objects)
    assert env["SERVER_SCHEME"] == "https"
    assert env["TLS_CA_FILE"] == "/etc/prometheus-tunnel/tls/ca.crt"
    assert env["TLS_CERT_FILE"] == "/etc/prometheus-tunnel/tls/tls.crt"
    assert env["TLS_KEY_FILE"] == "/etc/prometheus-tunnel/tls/tls.key"
    assert env["TLS_SERVER_NAME"] == "vm-db-01.internal.example"
    assert "TLS_INSECURE_SKIP_VERIFY" not in env
    assert env["UPSTREAM_PROXY"] == {"secretKeyRef": {"name": "egress-proxy", "key": "url"}}
    assert env["BEARER_TOKEN_FILE"] == "/etc/prometheus-tunnel/bearer/token"
    assert env["RUST_LOG"] == "info"
    assert env["CLIENT_ALLOWED_CIDRS"] == "10.0.0.0/8,fd00::/8"
    assert env["CLIENT_BEARER_TOKEN_FILE"] == "/etc/prometheus-tunnel/client-bearer/token"
    assert env["LISTEN_TLS_CERT_FILE"] == "/etc/prometheus-tunnel/listen-tls/tls.crt"
    assert env["LISTEN_TLS_KEY_FILE"] == "/etc/prometheus-tunnel/listen-tls/tls.key"
    assert env["LISTEN_TLS_CLIENT_CA_FILE"] == "/etc/prometheus-tunnel/listen-tls/ca.crt"
    assert (env["HEADER_READ_TIMEOUT"], env["MAX_CONNECTIONS"]) == ("5s", "512")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "exporter-tls"
    assert volumes["bearer"]["secret"]["secretName"] == "exporter-token"
    assert volumes["client-bearer"]["secret"]["secretName"] == "tunnel-client-token"
    assert volumes["listen-tls"]["secret"]["secretName"] == "tunnel-serving-cert"
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    # Whole-directory mounts (no subPath), so rotated Secrets reach the running pod.
    assert all("subPath" not in m for m in mounts.values())
    assert pod["containers"][0]["args"] == ["-c", "/etc/prometheus-tunnel/conf/tunnel.yaml"]
    configmaps = {o["metadata"]["name"]: o for o in by_kind(objects, "ConfigMap")}
    conf = yaml.safe_load(configmaps["server01-prometheus-tunnel"]["data"]["tunnel.yaml"])
    assert conf == {"threads": 2, "grace_period_seconds": 5}


def test_tls_without_https_or_two_kinds_of_credentials_fail_at_install():
    with pytest.raises(helm.HelmError) as refused:
        render({"settings": {**MINIMAL["settings"], "tls": {"secretName": "exporter-tls"}}})
    assert "settings.scheme=https" in str(refused.value)
    both = {"bearerToken": {"secretName": "t"}, "basicAuth": {"username": "u", "passwordSecretName": "p"}}
    with pytest.raises(helm.HelmError) as refused:
        render({"settings": {**MINIMAL["settings"], "auth": both}})
    assert "not both" in str(refused.value)


def test_basic_auth_from_a_secret():
    values = {"settings": {**MINIMAL["settings"], "auth": {"basicAuth": {"username": "prom", "passwordSecretName": "exporter-basic"}}}}
    objects = render(values)
    env = env_of(objects)
    assert env["BASIC_AUTH_USERNAME"] == "prom"
    assert env["BASIC_AUTH_PASSWORD_FILE"] == "/etc/prometheus-tunnel/basic-auth/password"
    assert "BASIC_AUTH_PASSWORD" not in env


# === multi-target mode ===


def tunnel_binary() -> str:
    """The most recently built tunnel binary (scripts/test.sh builds both before these tests)."""
    built = [p for p in (ROOT / "target" / b / "prometheus-tunnel" for b in ("release", "debug")) if p.exists()]
    assert built, "the tunnel is not built: run scripts/test.sh (cargo build) first"
    return str(max(built, key=lambda p: p.stat().st_mtime))


def multi_values() -> dict:
    return ci_values(CHART / "ci" / "multi-target-values.yaml")


def test_targets_render_into_a_conf_the_tunnel_accepts(tmp_path):
    values = multi_values()
    objects = render(values)
    conf_text = {o["metadata"]["name"]: o for o in by_kind(objects, "ConfigMap")}["server01-prometheus-tunnel"]["data"]["tunnel.yaml"]
    conf = yaml.safe_load(conf_text)
    assert conf["tunnel"]["targets"] == values["targets"]
    env = env_of(objects)
    assert "SERVER_IP" not in env, "no single exporter in multi-target mode"
    assert container(objects)["args"] == ["-c", "/etc/prometheus-tunnel/conf/tunnel.yaml"]
    # The real tunnel checks the rendered conf with the pod's env; the CA file the conf names
    # (mounted from a Secret in the pod) is made here by openssl.
    openssl = shutil.which("openssl")
    assert openssl, "openssl is not installed: run scripts/test.sh, or apt-get install openssl"
    ca = tmp_path / "ca.crt"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(tmp_path / "ca.key"), "-out", str(ca), "-days", "1", "-subj", "/CN=chart test CA"],
        check=True, capture_output=True,
    )
    assert "/etc/prometheus-tunnel/tls/ca.crt" in conf_text
    (tmp_path / "tunnel.yaml").write_text(conf_text.replace("/etc/prometheus-tunnel/tls/ca.crt", str(ca)))
    checked = subprocess.run(
        [tunnel_binary(), "-t", "-c", str(tmp_path / "tunnel.yaml")],
        env={k: v for k, v in env.items() if isinstance(v, str) and not k.endswith("_FILE")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr
    assert "configuration OK" in checked.stdout


def test_servicemonitor_scrapes_each_target_by_name():
    objects = render(multi_values())
    endpoints = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    by_target = {e["params"]["target"][0]: e for e in endpoints if "params" in e}
    assert sorted(by_target) == ["vm-01", "vm-02"]
    for name, endpoint in by_target.items():
        assert endpoint["port"] == "exporter"
        assert {"action": "replace", "targetLabel": "instance", "replacement": name} in endpoint["relabelings"]
    assert {"action": "replace", "targetLabel": "env", "replacement": "prod"} in by_target["vm-01"]["relabelings"]
    assert [e["port"] for e in endpoints if "params" not in e] == ["metrics"]
    assert by_kind(objects, "ScrapeConfig") == []


def test_http_sd_discovery_is_one_scrapeconfig():
    values = multi_values()
    values["monitor"] = {"targetDiscovery": "httpSD", "refreshInterval": "30s"}
    objects = render(values)
    scrape = one(objects, "ScrapeConfig")
    assert scrape["spec"]["httpSDConfigs"] == [
        {"url": "http://server01-prometheus-tunnel.monitoring.svc:9000/targets", "refreshInterval": "30s"}
    ]
    assert {"action": "replace", "sourceLabels": ["__param_target"], "targetLabel": "instance"} in scrape["spec"]["relabelings"]
    # The ServiceMonitor keeps only the tunnel's own metrics.
    assert [e["port"] for e in one(objects, "ServiceMonitor")["spec"]["endpoints"]] == ["metrics"]


def test_default_target_and_a_missing_exporter():
    values = multi_values()
    values["defaultTarget"] = "vm-02"
    assert env_of(render(values))["DEFAULT_TARGET"] == "vm-02"
    with pytest.raises(helm.HelmError):
        helm.Chart.load(str(CHART)).validate_schema({"settings": {"name": "x"}})
    with pytest.raises(helm.HelmError) as refused:
        helm.Chart.load(str(CHART)).validate_schema({**multi_values(), "targets": [{"name": "bad name", "address": "h"}]})
    assert "name" in str(refused.value)


# === monitors ===


@pytest.mark.parametrize("kind, endpoints_key", [("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints")])
def test_one_monitor_scrapes_the_exporter_once_and_the_tunnel(kind, endpoints_key):
    objects = render({**MINIMAL, "monitor": {"kind": kind}})
    monitors = [o for o in objects if o["kind"] in MONITOR_KINDS]
    assert [m["kind"] for m in monitors] == [kind], "exactly one monitor, never both"
    endpoints = monitors[0]["spec"][endpoints_key]
    assert [e["port"] for e in endpoints] == ["exporter", "metrics"]
    exporter, tunnel = endpoints
    assert {"action": "replace", "targetLabel": "instance", "replacement": "server01"} in exporter["relabelings"]
    assert {"action": "replace", "targetLabel": "job", "replacement": "prometheus-tunnel"} in tunnel["relabelings"]
    assert {"action": "replace", "targetLabel": "exporter", "replacement": "server01"} in tunnel["relabelings"]
    assert monitors[0]["spec"]["selector"]["matchLabels"] == one(objects, "Deployment")["spec"]["selector"]["matchLabels"]


def test_no_monitor_when_kind_is_empty():
    objects = render({**MINIMAL, "monitor": {"kind": ""}})
    assert [o for o in objects if o["kind"] in MONITOR_KINDS] == []


# === rules ===


def rendered_rules(values=MINIMAL) -> dict:
    rule = one(render(values), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def test_rules_toggle_as_in_the_original_chart():
    for on in (True, "enabled"):
        assert by_kind(render({"settings": {**MINIMAL["settings"], "rules": on}}), "PrometheusRule")
    for off in (False, "disabled"):
        assert not by_kind(render({"settings": {**MINIMAL["settings"], "rules": off}}), "PrometheusRule")


def test_rules_have_the_original_five_and_the_new_two():
    names = [r["alert"] for g in rendered_rules()["groups"] for r in g["rules"]]
    assert names == [
        "HighRequestRate",
        "SlowRequestDuration",
        "HighErrorRate",
        "HighLatency",
        "HighRequestVolume",
        "PrometheusTunnelExporterFailing",
        "PrometheusTunnelDown",
    ]
    for group in rendered_rules()["groups"]:
        for rule in group["rules"]:
            # rate() is per second; the original descriptions wrongly said per minute.
            assert "per minute" not in rule["annotations"]["description"], rule["alert"]


def test_promtool_checks_and_unit_tests_the_rules(tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rendered_rules()))
    shutil.copy(Path(__file__).with_name("rules_test.yaml"), tmp_path / "rules_test.yaml")
    check = subprocess.run([promtool(), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 7 rules found" in check.stdout
    unit = subprocess.run([promtool(), "test", "rules", "rules_test.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "SUCCESS" in unit.stdout


# === dashboard ===


def dashboard() -> dict:
    return json.loads((CHART / "dashboards" / "prometheus-tunnel.json").read_text())


def test_dashboard_configmap_only_when_enabled():
    assert not [o for o in by_kind(render(MINIMAL), "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    cm = next(o for o in by_kind(render({**MINIMAL, "dashboard": {"enabled": True}}), "ConfigMap") if o["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["prometheus-tunnel.json"]) == dashboard()


def test_dashboard_queries_parse_and_use_the_tunnels_metrics(tmp_path):
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    assert len(exprs) >= 8
    metrics = set()
    rules = []
    for i, expr in enumerate(exprs):
        concrete = expr.replace("$__rate_interval", "1m")
        concrete = re.sub(r"\$(job|namespace|exporter)", ".*", concrete)
        metrics.update(re.findall(r"\b(proxy_[a-z_]+|up)\{", concrete))
        rules.append({"record": f"dashboard:query_{i}", "expr": concrete})
    (tmp_path / "dashboard_rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run([promtool(), "check", "rules", "dashboard_rules.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert metrics >= {
        "up",
        "proxy_total_requests",
        "proxy_response_status_total",
        "proxy_request_duration_seconds_bucket",
        "proxy_upstream_errors_total",
    }
