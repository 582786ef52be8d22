{{/* Chart name, truncated to the 63 characters Kubernetes allows in names. */}}
{{- define "prometheus-tunnel.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name: the release name, with the chart name unless it already holds it. */}}
{{- define "prometheus-tunnel.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The namespace of every object. */}}
{{- define "prometheus-tunnel.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "prometheus-tunnel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image's version as a label value: the tag (or appVersion), never a digest, made of the
characters a label value may hold. */}}
{{- define "prometheus-tunnel.version" -}}
{{- $v := .Values.image.tag | default .Chart.AppVersion }}
{{- if contains "@" $v }}{{ $v = (splitList "@" $v | first) }}{{ end }}
{{- regexReplaceAll "[^A-Za-z0-9._-]" $v "_" | trunc 63 | trimSuffix "-" | trimSuffix "_" | trimSuffix "." }}
{{- end }}

{{/* The image reference: repository@digest when pinned, else repository:tag. */}}
{{- define "prometheus-tunnel.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "prometheus-tunnel.labels" -}}
helm.sh/chart: {{ include "prometheus-tunnel.chart" . }}
{{ include "prometheus-tunnel.selectorLabels" . }}
app.kubernetes.io/version: {{ include "prometheus-tunnel.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
prometheus-tunnel/exporter: {{ .Values.settings.name | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select this release's pods. */}}
{{- define "prometheus-tunnel.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prometheus-tunnel.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "prometheus-tunnel.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prometheus-tunnel.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when a setting of auto/true/false/enabled/disabled asks for an object whose API is
`api`: auto asks the cluster (.Capabilities). Call with (list $setting $api $ctx). */}}
{{- define "prometheus-tunnel.wanted" -}}
{{- $v := toString (index . 0) }}
{{- $api := index . 1 }}
{{- $ctx := index . 2 }}
{{- if or (eq $v "true") (eq $v "enabled") }}true
{{- else if eq $v "auto" }}{{ if $ctx.Capabilities.APIVersions.Has $api }}true{{ end }}
{{- end }}
{{- end }}

{{/* "true" when the ScrapeConfig of the exporter's series is rendered. */}}
{{- define "prometheus-tunnel.scrapeConfigEnabled" -}}
{{- include "prometheus-tunnel.wanted" (list .Values.monitor.enabled "monitoring.coreos.com/v1alpha1/ScrapeConfig" .) }}
{{- end }}

{{/* "true" when the monitor of the tunnel's own metrics is rendered. */}}
{{- define "prometheus-tunnel.tunnelMonitorEnabled" -}}
{{- if .Values.monitor.kind }}
{{- include "prometheus-tunnel.wanted" (list .Values.monitor.enabled (printf "monitoring.coreos.com/v1/%s" .Values.monitor.kind) .) }}
{{- end }}
{{- end }}

{{/* "true" when the PrometheusRule is rendered. */}}
{{- define "prometheus-tunnel.rulesEnabled" -}}
{{- include "prometheus-tunnel.wanted" (list .Values.settings.rules "monitoring.coreos.com/v1/PrometheusRule" .) }}
{{- end }}

{{/* PromQL selector of this release's own tunnel series. */}}
{{- define "prometheus-tunnel.tunnelSelector" -}}
job="{{ .Values.monitor.tunnelJob }}",namespace="{{ include "prometheus-tunnel.namespace" . }}",exporter="{{ .Values.settings.name }}"
{{- end }}

{{/* The tunnel's own series: a fixed job for the alert rules, and the exporter it serves. */}}
{{- define "prometheus-tunnel.tunnelRelabelings" -}}
- action: replace
  targetLabel: job
  replacement: {{ .Values.monitor.tunnelJob | quote }}
- action: replace
  targetLabel: exporter
  replacement: {{ .Values.settings.name | quote }}
{{- end }}

{{/* The routing parameter of multi-target mode. */}}
{{- define "prometheus-tunnel.targetParam" -}}
{{- .Values.settings.targetParam | default "target" }}
{{- end }}

{{/* "httpSD" or "static": how the ScrapeConfig finds the targets. */}}
{{- define "prometheus-tunnel.targetDiscovery" -}}
{{- $d := .Values.monitor.targetDiscovery }}
{{- if eq $d "auto" }}{{ if gt (len .Values.targets) 1000 }}httpSD{{ else }}static{{ end }}
{{- else }}{{ $d }}{{ end }}
{{- end }}

{{/* The Service's address inside the cluster. */}}
{{- define "prometheus-tunnel.serviceHost" -}}
{{ include "prometheus-tunnel.fullname" . }}.{{ include "prometheus-tunnel.namespace" . }}.svc
{{- end }}

{{/* Scheme, TLS and credentials to scrape the proxy port with, from the Secrets the tunnel
reads (settings.access). */}}
{{- define "prometheus-tunnel.scrapeAccess" -}}
{{- $a := .Values.settings.access }}
{{- if $a.tlsSecretName }}
scheme: HTTPS
tlsConfig:
  ca:
    secret:
      name: {{ $a.tlsSecretName }}
      key: {{ $a.tlsCaKey }}
  serverName: {{ include "prometheus-tunnel.serviceHost" . }}
  {{- if $a.clientCaKey }}
  cert:
    secret:
      name: {{ required "monitor.clientCertSecretName is required with settings.access.clientCaKey: the client certificate Prometheus presents" .Values.monitor.clientCertSecretName }}
      key: tls.crt
  keySecret:
    name: {{ .Values.monitor.clientCertSecretName }}
    key: tls.key
  {{- end }}
{{- else }}
scheme: HTTP
{{- end }}
{{- if $a.bearerTokenSecretName }}
authorization:
  type: Bearer
  credentials:
    name: {{ $a.bearerTokenSecretName }}
    key: {{ $a.bearerTokenKey }}
{{- end }}
{{- if $a.basicAuthUsername }}
basicAuth:
  username:
    name: {{ include "prometheus-tunnel.fullname" . }}-scrape-username
    key: username
  password:
    name: {{ $a.basicAuthPasswordSecretName }}
    key: {{ $a.basicAuthPasswordKey }}
{{- end }}
{{- end }}

{{/* The conf file's contents: settings.config, with `targets` under `tunnel:`. */}}
{{- define "prometheus-tunnel.conf" -}}
{{- $conf := deepCopy (.Values.settings.config | default dict) }}
{{- if .Values.targets }}
{{- $tunnel := deepCopy (get $conf "tunnel" | default dict) }}
{{- $_ := set $tunnel "targets" .Values.targets }}
{{- $_ := set $conf "tunnel" $tunnel }}
{{- end }}
{{- toYaml $conf }}
{{- end }}

{{/* "true" when the pod runs with a conf file (settings.config or targets). */}}
{{- define "prometheus-tunnel.hasConf" -}}
{{- if or .Values.settings.config .Values.targets }}true{{ end }}
{{- end }}

{{/* The combinations the tunnel refuses, refused at install. */}}
{{- define "prometheus-tunnel.checks" -}}
{{- $s := .Values.settings }}
{{- if and (eq (toString $s.listenPort) (toString $s.metrics.port)) }}
{{- fail (printf "settings.listenPort and settings.metrics.port are both %v: the proxy port and the metrics port need ports of their own" $s.listenPort) }}
{{- end }}
{{- if and (or $s.tls.secretName $s.tls.serverName $s.tls.insecureSkipVerify) (ne $s.scheme "https") }}
{{- fail "settings.tls.* is only used with settings.scheme=https: set the scheme, or remove the TLS settings" }}
{{- end }}
{{- if and $s.auth.bearerToken.secretName $s.auth.basicAuth.username }}
{{- fail "settings.auth: set either bearerToken or basicAuth, not both" }}
{{- end }}
{{- if and $s.access.bearerTokenSecretName $s.access.basicAuthUsername }}
{{- fail "settings.access: set either bearerTokenSecretName or basicAuthUsername, not both" }}
{{- end }}
{{- if and (not $s.serverIP) (not .Values.targets) (not $s.poll.port) (not $s.agent.port) }}
{{- fail "settings.serverIP is required (the exporter's IP address or DNS name), unless targets lists exporters, settings.poll.port serves clients that poll or settings.agent.port serves agents" }}
{{- end }}
{{- if $s.agent.port }}
{{- if or (eq (toString $s.agent.port) (toString $s.listenPort)) (eq (toString $s.agent.port) (toString $s.metrics.port)) (eq (toString $s.agent.port) (toString $s.poll.port)) }}
{{- fail (printf "settings.agent.port is %v, which the proxy, metrics or poll port has: the agent port needs a port of its own" $s.agent.port) }}
{{- end }}
{{- if not (and $s.agent.tlsSecretName $s.agent.clientCaKey) }}
{{- fail "settings.agent.port needs settings.agent.tlsSecretName (the agent port's certificate and key, and clientCaKey, the CA of the agents' certificates): agents are told apart by their client certificates" }}
{{- end }}
{{- end }}
{{- if $s.poll.port }}
{{- if or (eq (toString $s.poll.port) (toString $s.listenPort)) (eq (toString $s.poll.port) (toString $s.metrics.port)) }}
{{- fail (printf "settings.poll.port is %v, which the proxy or metrics port has: the poll port needs a port of its own" $s.poll.port) }}
{{- end }}
{{- if and $s.poll.bindNames (not (and $s.poll.tlsSecretName $s.poll.clientCaKey)) }}
{{- fail "settings.poll.bindNames binds names to client certificates: set settings.poll.tlsSecretName and settings.poll.clientCaKey" }}
{{- end }}
{{- end }}
{{- if and $s.targetParam (not .Values.targets) (not $s.agent.port) }}
{{- fail "settings.targetParam is used with targets only: a single exporter gets every request with its query untouched" }}
{{- end }}
{{- $seen := dict }}
{{- range .Values.targets }}
{{- if hasKey $seen .name }}
{{- fail (printf "targets: the name %q is used twice; each target needs a name of its own" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- if and (eq .name "default") $s.serverIP }}
{{- fail "targets: the name \"default\" is the settings.serverIP exporter's; give this target another" }}
{{- end }}
{{- end }}
{{- if and .Values.defaultTarget (not (or (hasKey $seen .Values.defaultTarget) (and $s.serverIP (eq .Values.defaultTarget "default")))) }}
{{- fail (printf "defaultTarget %q names no target" .Values.defaultTarget) }}
{{- end }}
{{- end }}
