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

{{- define "prometheus-tunnel.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. */}}
{{- define "prometheus-tunnel.labels" -}}
helm.sh/chart: {{ include "prometheus-tunnel.chart" . }}
{{ include "prometheus-tunnel.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
prometheus-tunnel/exporter: {{ .Values.settings.name | quote }}
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

{{/* "true" when the PrometheusRule is wanted: settings.rules is true or "enabled". */}}
{{- define "prometheus-tunnel.rulesEnabled" -}}
{{- $r := .Values.settings.rules }}
{{- if or (eq (toString $r) "true") (eq (toString $r) "enabled") }}true{{ end }}
{{- end }}

{{/* PromQL selector of this release's own tunnel series. */}}
{{- define "prometheus-tunnel.tunnelSelector" -}}
job="{{ .Values.monitor.tunnelJob }}",namespace="{{ .Release.Namespace }}",exporter="{{ .Values.settings.name }}"
{{- end }}

{{/* Relabelings shared by both monitor kinds: the exporter's series get instance=<name>. */}}
{{- define "prometheus-tunnel.exporterRelabelings" -}}
- action: replace
  targetLabel: instance
  replacement: {{ .Values.settings.name | quote }}
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

{{/* One monitor endpoint per target: the exporter through the tunnel, with ?target=NAME. */}}
{{- define "prometheus-tunnel.targetEndpoints" -}}
{{- range $i, $t := .Values.targets }}
{{- if $i }}
{{ end -}}
- port: exporter
  path: {{ $.Values.settings.metricsPath }}
  params:
    target: [{{ $t.name | quote }}]
  interval: {{ $.Values.monitor.interval }}
  scrapeTimeout: {{ $.Values.monitor.scrapeTimeout }}
  honorLabels: {{ $.Values.monitor.honorLabels }}
  relabelings:
    - action: replace
      targetLabel: instance
      replacement: {{ $t.name | quote }}
    {{- range $k, $v := $t.labels }}
    - action: replace
      targetLabel: {{ $k }}
      replacement: {{ $v | quote }}
    {{- end }}
  {{- with $.Values.monitor.metricRelabelings }}
  metricRelabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}
