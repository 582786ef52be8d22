"""The Helm chart, rendered and linted by real Helm (helm-python-sdk embeds Helm's Go SDK) as a
cluster with or without the Prometheus Operator renders it; its core objects validated with
kubernetes-validate, the Operator's objects against the Operator's own CRD schemas (the
cloudcoil models generated from them), its alert rules checked and unit-tested with promtool,
its dashboard's queries parsed by promtool."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator_v1
from cloudcoil.models.prometheus_operator import v1alpha1 as operator_v1alpha1

from helpers import (CHART, CI_VALUES, KUBE_VERSION, MINIMAL, MONITOR_KINDS, OPERATOR_APIS, by_kind,
                     ci_values, container, env_of, notes, one, render, render_manifests, tool)

CORE_KINDS = {"Deployment", "Service", "ServiceAccount", "ConfigMap", "PodDisruptionBudget",
              "HorizontalPodAutoscaler", "NetworkPolicy", "Secret", "Ingress"}
OPERATOR_MODELS = {
    "ServiceMonitor": operator_v1.ServiceMonitor,
    "PodMonitor": operator_v1.PodMonitor,
    "PrometheusRule": operator_v1.PrometheusRule,
    "ScrapeConfig": operator_v1alpha1.ScrapeConfig,
}


def promtool() -> str:
    return tool("promtool", "prometheus")


def settings(**extra) -> dict:
    return {"settings": {**MINIMAL["settings"], **extra}}


# === lint and schema ===


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_lint_strict_is_clean(values_file):
    report = helm.lint(str(CHART), ci_values(values_file), strict=True, kube_version=KUBE_VERSION)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert report["total_charts_linted"] == 1
    assert problems == [], problems


def test_lint_without_an_exporter_fails():
    report = helm.lint(str(CHART), None, strict=True)
    text = json.dumps(report)
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"]), text
    assert "serverIP" in text or "name" in text, text


@pytest.mark.parametrize(
    "values, key",
    [
        (settings(serverPort=70000), "serverPort"),
        (settings(serverPort="abc"), "serverPort"),
        (settings(scheme="gopher"), "scheme"),
        (settings(upstreamTimeout="soon"), "upstreamTimeout"),
        (settings(rules="maybe"), "rules"),
        (settings(name="bad name!"), "name"),
        (settings(serverIP="http://10.0.0.3:9100"), "serverIP"),
        (settings(upstreamProxy={"url": "http://user:secret@proxy:3128"}), "url"),
        (settings(serverPortt=9100), "serverPortt"),
        (settings(access={"allowedCidrs": ["everyone"]}), "allowedCidrs"),
        (settings(limits={"maxConnections": 0}), "maxConnections"),
        (settings(targetParam="ex porter"), "targetParam"),
        ({**MINIMAL, "monitor": {"kind": "Both"}}, "kind"),
        ({**MINIMAL, "monitor": {"targetDiscovery": "endpoints"}}, "targetDiscovery"),
        ({**MINIMAL, "image": {"repository": "r", "digest": "latest"}}, "digest"),
        ({**MINIMAL, "replicaCoutn": 2}, "replicaCoutn"),
        ({**MINIMAL, "prometheusRule": {"alerts": {"HighErrorRate": {"enabled": False}}}}, "HighErrorRate"),
        ({**MINIMAL, "prometheusRule": {"alerts": {"PrometheusTunnelDown": {"for": "often"}}}}, "for"),
        ({**MINIMAL, "targets": [{"name": "a", "address": "h:1", "proxy": "http://u:pw@p:3128"}]}, "proxy"),
        ({**MINIMAL, "targets": [{"name": "a", "address": "h:1", "tls": {"ca_file": "ca.crt"}}]}, "ca_file"),
        ({**MINIMAL, "networkPolicy": {"enabled": True, "from": []}}, "from"),
        (settings(poll={"port": 8081, "maxPushSize": "lots"}), "maxPushSize"),
        (settings(poll={"port": 8081, "bindnames": True}), "bindnames"),
        ({**MINIMAL, "pollIngress": {"enabled": True, "hosts": []}}, "hosts"),
        (settings(agent={"port": 9443, "maxStreams": 0}), "maxStreams"),
        (settings(agent={"port": 9443, "tlsSecret": "x"}), "tlsSecret"),
        ({**MINIMAL, "agentService": {"type": "Ingress"}}, "type"),
    ],
)
def test_schema_refuses_bad_values_and_unknown_keys_at_install(values, key):
    with pytest.raises(helm.HelmError) as refused:
        helm.Chart.load(str(CHART)).validate_schema(values)
    assert key in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    "values, words",
    [
        (settings(listenPort=9182), "both 9182"),
        ({"settings": {"name": "fleet"}, "targets": [{"name": "a", "address": "h:1"}, {"name": "a", "address": "i:1"}]},
         'the name "a" is used twice'),
        ({**MINIMAL, "targets": [{"name": "default", "address": "h:1"}]}, "\"default\" is the settings.serverIP"),
        ({"settings": {"name": "fleet"}, "targets": [{"name": "a", "address": "h:1"}], "defaultTarget": "b"},
         'defaultTarget "b" names no target'),
        (settings(targetParam="exporter"), "targetParam is used with targets only"),
        (settings(tls={"secretName": "exporter-tls"}), "settings.scheme=https"),
        (settings(auth={"bearerToken": {"secretName": "t"}, "basicAuth": {"username": "u", "passwordSecretName": "p"}}),
         "not both"),
        ({**settings(access={"tlsSecretName": "serving", "clientCaKey": "ca.crt"}), "monitor": {"enabled": True}},
         "monitor.clientCertSecretName is required"),
        (settings(poll={"port": 8080}), "the poll port needs a port of its own"),
        (settings(poll={"port": 8081, "bindNames": True}), "binds names to client certificates"),
        (settings(agent={"port": 9443}), "agents are told apart by their client certificates"),
        (settings(agent={"port": 8080, "tlsSecretName": "a"}), "the agent port needs a port of its own"),
    ],
)
def test_combinations_the_tunnel_refuses_fail_at_install(values, words):
    with pytest.raises(helm.HelmError) as refused:
        render(values)
    assert words in str(refused.value), str(refused.value)


# === core objects ===


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
@pytest.mark.parametrize("apis", [(), OPERATOR_APIS], ids=["no-operator", "operator"])
def test_core_objects_are_valid_kubernetes(values_file, apis):
    objects = render(ci_values(values_file), api_versions=apis)
    core = [o for o in objects if o["kind"] in CORE_KINDS]
    assert {o["kind"] for o in core} >= {"Deployment", "Service", "ServiceAccount"}
    for obj in core:
        kubernetes_validate.validate(obj, KUBE_VERSION.lstrip("v"), strict=True)
    unexpected = {o["kind"] for o in objects} - CORE_KINDS - MONITOR_KINDS
    assert not unexpected, unexpected


def known_fields_only(sent, accepted, path="") -> list[str]:
    """The keys of `sent` that the model dropped (pydantic ignores unknown fields), recursively."""
    unknown = []
    if isinstance(sent, dict) and isinstance(accepted, dict):
        for key, value in sent.items():
            if key not in accepted:
                unknown.append(f"{path}.{key}")
            else:
                unknown += known_fields_only(value, accepted[key], f"{path}.{key}")
    elif isinstance(sent, list) and isinstance(accepted, list):
        for i, (a, b) in enumerate(zip(sent, accepted)):
            unknown += known_fields_only(a, b, f"{path}[{i}]")
    return unknown


def validate_operator_object(obj: dict) -> None:
    """Against the Operator's own CRD schema: types, enums, required fields, and no field the CRD
    does not know."""
    model = OPERATOR_MODELS[obj["kind"]].model_validate(obj)
    accepted = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    unknown = known_fields_only(obj, accepted)
    assert not unknown, f"{obj['kind']}: fields the CRD does not know: {unknown}"


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_operator_objects_validate_against_the_operators_crds(values_file):
    values = ci_values(values_file)
    for discovery in ("static", "httpSD"):
        values.setdefault("monitor", {})["targetDiscovery"] = discovery
        objects = [o for o in render(values) if o["kind"] in MONITOR_KINDS]
        assert objects
        for obj in objects:
            validate_operator_object(obj)


def test_the_crd_check_catches_an_unknown_field():
    scrape = one(render(MINIMAL), "ScrapeConfig")
    scrape["spec"]["scrapeInterwal"] = "30s"
    with pytest.raises(AssertionError, match="scrapeInterwal"):
        validate_operator_object(scrape)


def test_env_is_the_tunnels_contract():
    env = env_of(render(ci_values(CHART / "ci" / "default-values.yaml")))
    assert env == {
        "SERVER_IP": "192.168.0.3",
        "SERVER_PORT": "9182",
        "SERVER_SCHEME": "http",
        "LISTEN_ADDRESS": "0.0.0.0",
        "LISTEN_PORT": "8080",
        "METRICS_PORT": "9182",
        "UPSTREAM_TIMEOUT": "10s",
        "DEBUG": "false",
        "HEADER_READ_TIMEOUT": "10s",
        "IDLE_TIMEOUT": "120s",
        # MAX_CONNECTIONS is left to the tunnel, which fits it to the pod's memory limit.
    }


def test_one_metrics_port_everywhere():
    """9182: the binary's, the Dockerfile's and the README's default."""
    objects = render(MINIMAL)
    c = container(objects)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"exporter": 8080, "metrics": 9182}
    svc = one(objects, "Service")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"exporter": 8080, "metrics": 9182}
    dockerfile = (CHART.parents[1] / "Dockerfile").read_text()
    assert "EXPOSE 8080 9182" in dockerfile
    readme = (CHART.parents[1] / "README.md").read_text()
    assert "| `METRICS_PORT` | `metrics_port` | `--metrics-port` |" in readme and "`9182`" in readme


def test_ports_probes_and_overrides():
    objects = render({**settings(listenPort=18080, metrics={"port": 19000}),
                      "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 30}})
    c = container(objects)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"exporter": 18080, "metrics": 19000}
    # Probes ask the tunnel on its metrics port, never the exporter.
    # Helm merges the override into the default probe.
    assert c["livenessProbe"] == {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 30,
                                  "failureThreshold": 3}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


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


def test_every_value_of_a_prometheus_community_chart():
    values = {
        **MINIMAL,
        "namespaceOverride": "tunnels",
        "commonLabels": {"team": "observability"},
        "priorityClassName": "monitoring",
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "extraVolumes": [{"name": "extra", "emptyDir": {}}],
        "extraVolumeMounts": [{"name": "extra", "mountPath": "/extra"}],
        "extraEnvFrom": [{"configMapRef": {"name": "tunnel-env"}}],
        "extraArgs": ["-d"],
        "networkPolicy": {"enabled": True, "proxyFrom": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}]},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5},
    }
    objects = render(values)
    for obj in objects:
        assert obj["metadata"]["namespace"] == "tunnels", obj["kind"]
        assert obj["metadata"]["labels"]["team"] == "observability", obj["kind"]
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert pod["priorityClassName"] == "monitoring"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert {"name": "extra", "emptyDir": {}} in pod["volumes"]
    c = pod["containers"][0]
    assert {"name": "extra", "mountPath": "/extra"} in c["volumeMounts"]
    assert c["envFrom"] == [{"configMapRef": {"name": "tunnel-env"}}]
    assert c["args"] == ["-d"]
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    policy = one(objects, "NetworkPolicy")["spec"]
    assert policy["ingress"][0]["ports"] == [{"port": "exporter", "protocol": "TCP"}]
    assert policy["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"app": "prometheus"}}}]


def test_pdb_only_with_more_than_one_replica():
    assert by_kind(render(MINIMAL), "PodDisruptionBudget") == []
    pdb = one(render({**MINIMAL, "replicaCount": 3}), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1


def test_an_image_pinned_by_digest_keeps_valid_labels():
    digest = "sha256:" + "0123456789abcdef" * 4
    objects = render({**MINIMAL, "image": {"repository": "registry.example/tunnel", "digest": digest, "tag": "0.1.0"}})
    assert container(objects)["image"] == f"registry.example/tunnel@{digest}"
    tagged = render({**MINIMAL, "image": {"repository": "r", "tag": f"0.1.0@{digest}"}})
    for objects in (objects, tagged):
        for obj in objects:
            version = obj["metadata"]["labels"]["app.kubernetes.io/version"]
            assert re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?", version), version
            if obj["kind"] in CORE_KINDS:
                kubernetes_validate.validate(obj, KUBE_VERSION.lstrip("v"), strict=True)


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
    assert volumes["listen-tls"]["secret"]["secretName"] == "tunnel-serving-cert"
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    # Whole-directory mounts (no subPath), so rotated Secrets reach the running pod.
    assert all("subPath" not in m for m in mounts.values())
    assert pod["containers"][0]["args"] == ["-c", "/etc/prometheus-tunnel/conf/tunnel.yaml"]
    configmaps = {o["metadata"]["name"]: o for o in by_kind(objects, "ConfigMap")}
    conf = yaml.safe_load(configmaps["server01-prometheus-tunnel"]["data"]["tunnel.yaml"])
    assert conf == {"threads": 2, "grace_period_seconds": 5}


def test_basic_auth_from_a_secret():
    env = env_of(render(settings(auth={"basicAuth": {"username": "prom", "passwordSecretName": "exporter-basic"}})))
    assert env["BASIC_AUTH_USERNAME"] == "prom"
    assert env["BASIC_AUTH_PASSWORD_FILE"] == "/etc/prometheus-tunnel/basic-auth/password"
    assert "BASIC_AUTH_PASSWORD" not in env


# === clusters with and without the Prometheus Operator ===


def test_a_cluster_without_the_operator_gets_no_monitor_and_is_told():
    objects = render(ci_values(CHART / "ci" / "default-values.yaml"), api_versions=())
    assert [o for o in objects if o["kind"] in MONITOR_KINDS] == []
    text = notes(ci_values(CHART / "ci" / "default-values.yaml"), api_versions=())
    assert "No ScrapeConfig was created: this cluster has no monitoring.coreos.com/v1alpha1 ScrapeConfig API" in text
    assert "no Prometheus Operator API in this cluster" in text


def test_a_cluster_with_the_operator_gets_monitors_and_rules():
    objects = render(ci_values(CHART / "ci" / "default-values.yaml"))
    assert sorted(o["kind"] for o in objects if o["kind"] in MONITOR_KINDS) == [
        "PrometheusRule", "ScrapeConfig", "ServiceMonitor"]
    text = notes(ci_values(CHART / "ci" / "default-values.yaml"), api_versions=OPERATOR_APIS)
    assert "A ScrapeConfig scrapes the exporter through the Service" in text
    assert "A PrometheusRule holds the tunnel's alerts" in text


def test_monitors_can_be_asked_for_or_refused_whatever_the_cluster():
    assert [o["kind"] for o in render({**MINIMAL, "monitor": {"enabled": True}, "settings": {**MINIMAL["settings"], "rules": True}},
                                      api_versions=()) if o["kind"] in MONITOR_KINDS]
    assert not [o for o in render({**MINIMAL, "monitor": {"enabled": False}, "settings": {**MINIMAL["settings"], "rules": "disabled"}})
                if o["kind"] in MONITOR_KINDS]


# === scraping: each exporter once per interval ===


def scrapes_per_interval(objects: list[dict], replicas: int) -> dict[str, int]:
    """How many times per interval the Operator's objects make Prometheus scrape each exporter:
    a monitor endpoint on the proxy port scrapes it from every pod, a ScrapeConfig target
    pointing at the Service once."""
    counts: dict[str, int] = {}
    for obj in objects:
        if obj["kind"] in ("ServiceMonitor", "PodMonitor"):
            for endpoint in obj["spec"].get("endpoints", obj["spec"].get("podMetricsEndpoints", [])):
                if endpoint["port"] == "exporter":
                    name = endpoint.get("params", {}).get("target", ["(the exporter)"])[0]
                    counts[name] = counts.get(name, 0) + replicas
        if obj["kind"] == "ScrapeConfig":
            for group in obj["spec"].get("staticConfigs", []):
                name = group["labels"].get("__param_target", group["labels"]["instance"])
                for target in group["targets"]:
                    assert target.startswith(obj["metadata"]["name"]), "scraped through the Service"
                    counts[name] = counts.get(name, 0) + 1
    return counts


@pytest.mark.parametrize("replicas", [1, 3, 5])
def test_each_exporter_is_scraped_once_per_interval_whatever_the_replicas(replicas):
    single = render({**MINIMAL, "replicaCount": replicas})
    assert scrapes_per_interval(single, replicas) == {"server01": 1}
    fleet = ci_values(CHART / "ci" / "multi-target-values.yaml")
    fleet["replicaCount"] = replicas
    assert scrapes_per_interval(render(fleet), replicas) == {"vm-01": 1, "vm-02": 1}
    for objects in (single, render(fleet)):
        scrape = one(objects, "ScrapeConfig")["spec"]
        # No pod labels on the exporter's series: only job and instance (and the target's own).
        labels = {k for g in scrape["staticConfigs"] for k in g["labels"]}
        assert labels <= {"instance", "__param_target", "env"}
        # The tunnel's own metrics still come from each pod.
        monitor = one(objects, "ServiceMonitor")["spec"]["endpoints"]
        assert [e["port"] for e in monitor] == ["metrics"]


def test_a_fleet_routed_by_another_parameter():
    values = ci_values(CHART / "ci" / "fleet-secrets-values.yaml")
    values["monitor"]["targetDiscovery"] = "static"
    objects = render(values)
    assert env_of(objects)["TARGET_PARAM"] == "exporter"
    groups = one(objects, "ScrapeConfig")["spec"]["staticConfigs"]
    assert [g["labels"]["__param_exporter"] for g in groups] == ["db-01", "win-02", "probes"]
    sd = render({**values, "monitor": {"enabled": True, "targetDiscovery": "httpSD"}})
    relabel = one(sd, "ScrapeConfig")["spec"]["relabelings"]
    assert {"action": "replace", "sourceLabels": ["__param_exporter"], "targetLabel": "instance"} in relabel


def test_access_control_wires_into_the_scrapeconfig():
    scrape = one(render(ci_values(CHART / "ci" / "access-values.yaml")), "ScrapeConfig")["spec"]
    assert scrape["scheme"] == "HTTPS"
    assert scrape["tlsConfig"] == {
        "ca": {"secret": {"name": "tunnel-serving-cert", "key": "ca.crt"}},
        "serverName": "server01-prometheus-tunnel.monitoring.svc",
        "cert": {"secret": {"name": "prometheus-scrape-client", "key": "tls.crt"}},
        "keySecret": {"name": "prometheus-scrape-client", "key": "tls.key"},
    }
    assert scrape["basicAuth"] == {
        "username": {"name": "server01-prometheus-tunnel-scrape-username", "key": "username"},
        "password": {"name": "tunnel-client-password", "key": "password"},
    }
    bearer = one(render(ci_values(CHART / "ci" / "full-values.yaml")), "ScrapeConfig")["spec"]
    assert bearer["authorization"] == {"type": "Bearer", "credentials": {"name": "tunnel-client-token", "key": "token"}}


def test_a_fleet_of_ten_thousand_targets_renders_no_object_over_1_mib():
    targets = [{"name": f"host-{i:05}", "address": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:9100",
                "labels": {"env": "prod"}} for i in range(10_000)]
    manifests = render_manifests({"settings": {"name": "fleet"}, "targets": targets}, OPERATOR_APIS)
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                size = len(yaml.safe_dump(doc).encode())
                assert size < 1024 * 1024, f"{doc['kind']} of {size} bytes"
    objects = render({"settings": {"name": "fleet"}, "targets": targets})
    # Past 1,000 targets the ScrapeConfig reads /targets instead of listing them.
    assert "httpSDConfigs" in one(objects, "ScrapeConfig")["spec"]


def test_the_fleet_conf_holds_the_targets_and_their_mounted_files():
    values = ci_values(CHART / "ci" / "multi-target-values.yaml")
    objects = render(values)
    conf = yaml.safe_load(one(objects, "ConfigMap")["data"]["tunnel.yaml"])
    assert conf["tunnel"]["targets"] == values["targets"]
    assert "SERVER_IP" not in env_of(objects), "no single exporter in multi-target mode"
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/etc/prometheus-tunnel/targets/vm-02"]]["secret"] == {"secretName": "vm-02-tls"}


# === rules ===


def rendered_rules(values=MINIMAL) -> dict:
    rule = one(render(values), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def alert_names(values=MINIMAL) -> list[str]:
    return [r["alert"] for g in rendered_rules(values)["groups"] for r in g["rules"] if "alert" in r]


def test_rules_toggle_as_in_the_original_chart():
    for on in (True, "enabled"):
        assert by_kind(render(settings(rules=on), api_versions=()), "PrometheusRule")
    for off in (False, "disabled"):
        assert not by_kind(render(settings(rules=off)), "PrometheusRule")


def test_alerts_are_prefixed_scoped_to_the_release_and_tunable():
    assert alert_names() == [
        "PrometheusTunnelHighRequestRate",
        "PrometheusTunnelSlowRequests",
        "PrometheusTunnelHighErrorRate",
        "PrometheusTunnelHighLatency",
        "PrometheusTunnelHighRequestVolume",
        "PrometheusTunnelExporterFailing",
        "PrometheusTunnelDown",
    ]
    for group in rendered_rules()["groups"]:
        for rule in group["rules"]:
            assert 'exporter="server01"' in rule["expr"] and 'namespace="monitoring"' in rule["expr"], rule["alert"]
            assert "per minute" not in rule["annotations"]["description"], rule["alert"]
    tuned = {**MINIMAL, "prometheusRule": {
        "alerts": {
            "PrometheusTunnelHighErrorRate": {"threshold": 2, "for": "10m", "severity": "page",
                                              "labels": {"team": "db"}, "runbookUrl": "https://runbooks.example/tunnel"},
            "PrometheusTunnelHighRequestRate": {"enabled": False},
        },
        "extraRules": [{"alert": "MyTunnelAlert", "expr": "vector(0) > 1"}],
    }}
    rules = {r["alert"]: r for g in rendered_rules(tuned)["groups"] for r in g["rules"]}
    assert "PrometheusTunnelHighRequestRate" not in rules and "MyTunnelAlert" in rules
    error_rate = rules["PrometheusTunnelHighErrorRate"]
    assert error_rate["expr"].endswith("> 2") and error_rate["for"] == "10m"
    assert error_rate["labels"] == {"severity": "page", "team": "db"}
    assert error_rate["annotations"]["runbook_url"] == "https://runbooks.example/tunnel"


def test_tunnel_down_is_only_there_when_the_tunnel_is_scraped():
    assert "PrometheusTunnelDown" in alert_names()
    assert "PrometheusTunnelDown" not in alert_names({**MINIMAL, "monitor": {"kind": ""}})


def promtool_checks(tmp_path: Path, rules: dict, tests_file: str, count: int) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    shutil.copy(Path(__file__).with_name(tests_file), tmp_path / tests_file)
    check = subprocess.run([promtool(), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {count} rules found" in check.stdout
    unit = subprocess.run([promtool(), "test", "rules", tests_file], cwd=tmp_path, capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr
    assert "SUCCESS" in unit.stdout


def test_promtool_checks_and_unit_tests_the_default_rules(tmp_path):
    promtool_checks(tmp_path, rendered_rules(), "rules_test.yaml", 7)


def test_promtool_unit_tests_tuned_rules(tmp_path):
    tuned = {**MINIMAL, "prometheusRule": {"alerts": {
        "PrometheusTunnelExporterFailing": {"threshold": 0.1, "for": "1m", "severity": "page"},
        "PrometheusTunnelHighRequestVolume": {"enabled": False},
    }}}
    promtool_checks(tmp_path, rendered_rules(tuned), "rules_tuned_test.yaml", 6)


# === dashboard ===


def dashboard() -> dict:
    return json.loads((CHART / "dashboards" / "prometheus-tunnel.json").read_text())


def test_dashboard_configmap_only_when_enabled():
    assert not [o for o in by_kind(render(MINIMAL), "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    cm = next(o for o in by_kind(render({**MINIMAL, "dashboard": {"enabled": True}}), "ConfigMap")
              if o["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["prometheus-tunnel.json"]) == dashboard()


def test_dashboard_has_a_target_view_and_parses(tmp_path):
    variables = [v["name"] for v in dashboard()["templating"]["list"]]
    assert variables == ["datasource", "job", "namespace", "exporter", "target"]
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    metrics = set()
    rules = []
    for i, expr in enumerate(exprs):
        concrete = expr.replace("$__rate_interval", "1m")
        concrete = re.sub(r"\$(job|namespace|exporter|target)", ".*", concrete)
        metrics.update(re.findall(r"\b(proxy_[a-z_]+|prometheus_tunnel_[a-z_]+|up)\{", concrete))
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
        "proxy_upstream_up",
        "proxy_connections_rejected_total",
        "proxy_open_connections",
        "prometheus_tunnel_build_info",
    }
    per_target = [t["expr"] for p in dashboard()["panels"] for t in p["targets"] if 'target=~"$target"' in t["expr"]]
    assert len(per_target) >= 6, "the target variable filters the per-target panels"


# === the chart's README ===


def leaf_values(values: dict, prefix: str = "") -> list[str]:
    """Dotted paths of values.yaml's values, down to maps that are free-form (labels) or empty."""
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in FREE_FORM:
            paths += leaf_values(value, f"{path}.")
        else:
            paths.append(path)
    return paths


FREE_FORM = {"podSecurityContext", "securityContext", "livenessProbe", "readinessProbe", "resources",
             "dashboard.labels", "prometheusRule.alerts"}


def test_the_chart_readme_lists_every_value():
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # The alerts are listed by name in the alerts table, their fields once for all.
    missing = [p for p in leaf_values(values) if f"`{p}`" not in readme and p != "prometheusRule.alerts"]
    assert missing == [], f"values the chart README does not list: {missing}"
    for alert in values["prometheusRule"]["alerts"]:
        assert f"| `{alert}` |" in readme, alert


# === reverse mode ===


def test_reverse_mode_gets_its_port_service_ingress_and_scrape_config():
    objects = render(ci_values(CHART / "ci" / "poll-values.yaml"))
    env = {e["name"]: e.get("value") for e in container(objects)["env"]}
    assert env["POLL_PORT"] == "8081"
    assert env["POLL_TLS_CLIENT_CA_FILE"] == "/etc/prometheus-tunnel/poll-tls/ca.crt"
    assert (env["POLL_BIND_NAMES"], env["POLL_KEEPALIVE"], env["POLL_MAX_PUSH_SIZE"]) == ("true", "20s", "32MiB")
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports["poll"] == 8081
    services = {o["metadata"]["name"]: o["spec"] for o in by_kind(objects, "Service")}
    poll = services["server01-prometheus-tunnel-poll"]
    assert poll["type"] == "LoadBalancer" and poll["ports"][0]["targetPort"] == "poll"
    assert all(p["name"] != "poll" for p in services["server01-prometheus-tunnel"]["ports"])
    ingress = one(objects, "Ingress")["spec"]
    paths = [p["path"] for p in ingress["rules"][0]["http"]["paths"]]
    assert paths == ["/poll", "/push", "/clients"]
    policy = one(objects, "NetworkPolicy")["spec"]
    assert [r["ports"][0]["port"] for r in policy["ingress"]] == ["exporter", "metrics", "poll"]
    scrapes = {o["metadata"]["name"]: o["spec"] for o in by_kind(objects, "ScrapeConfig")}
    polled = scrapes["server01-prometheus-tunnel-polled"]
    assert polled["proxyUrl"] == "http://server01-prometheus-tunnel.monitoring.svc:8080"
    assert polled["httpSDConfigs"][0]["url"] == "http://server01-prometheus-tunnel.monitoring.svc:9182/targets"
    keep = polled["relabelings"][0]
    assert (keep["action"], keep["sourceLabels"], keep["regex"]) == ("keep", ["__meta_prometheus_tunnel_source"], "poll")
    assert polled["relabelings"][2]["replacement"] == "${1}:9100"
    assert "server01-prometheus-tunnel" in scrapes, "the configured exporter keeps its ScrapeConfig"


# === agent mode ===


def test_agent_mode_gets_its_port_services_peers_and_scrape_config():
    objects = render(ci_values(CHART / "ci" / "agent-values.yaml"), name="agents")
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["AGENT_PORT"]["value"] == "9443"
    assert env["AGENT_TLS_CLIENT_CA_FILE"]["value"] == "/etc/prometheus-tunnel/agent-tls/agents-ca.crt"
    assert env["REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["PEERS"]["value"] == "agents-prometheus-tunnel-peers.monitoring.svc:9182"
    assert "SERVER_IP" not in env
    assert one(objects, "Deployment")["spec"]["replicas"] == 3
    services = {o["metadata"]["name"]: o["spec"] for o in by_kind(objects, "Service")}
    agent = services["agents-prometheus-tunnel-agent"]
    assert agent["type"] == "LoadBalancer" and agent["ports"][0]["targetPort"] == "agent"
    peers = services["agents-prometheus-tunnel-peers"]
    # Every pod's own address, ready or not, for PEERS.
    assert peers["clusterIP"] == "None" and peers["publishNotReadyAddresses"] is True
    assert peers["ports"][0]["targetPort"] == "metrics"
    policy = one(objects, "NetworkPolicy")["spec"]
    rules = {r["ports"][0]["port"]: r for r in policy["ingress"]}
    assert rules["agent"]["from"] == [{"ipBlock": {"cidr": "198.51.100.0/24"}}]
    # The replicas ask each other's metrics port, past a restricted metricsFrom.
    selector = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus-tunnel",
                                                "app.kubernetes.io/instance": "agents"}}}
    assert selector in rules["metrics"]["from"]
    scrapes = {o["metadata"]["name"]: o["spec"] for o in by_kind(objects, "ScrapeConfig")}
    assert list(scrapes) == ["agents-prometheus-tunnel-agents"]
    agents = scrapes["agents-prometheus-tunnel-agents"]
    assert agents["httpSDConfigs"][0]["url"] == "http://agents-prometheus-tunnel.monitoring.svc:9182/targets"
    keep = agents["relabelings"][0]
    assert (keep["action"], keep["sourceLabels"], keep["regex"]) == ("keep", ["__meta_prometheus_tunnel_source"], "agent")
    assert "proxyUrl" not in agents


def test_reverse_mode_alone_needs_no_exporter_and_scrapes_none():
    objects = render({"settings": {"name": "site", "poll": {"port": 8081}}})
    scrapes = [o["metadata"]["name"] for o in by_kind(objects, "ScrapeConfig")]
    assert scrapes == ["server01-prometheus-tunnel-polled"]
    env = {e["name"] for e in container(objects)["env"]}
    assert "SERVER_IP" not in env and "POLL_PORT" in env
    assert not by_kind(objects, "Ingress"), "no Ingress unless asked for"
