{{/*
Names, labels and the addresses every other template shares. Each template here takes this
chart's own context: `.` inside the chart, `(index .Subcharts "payrails-mtls-proxy")` from a
parent chart.
*/}}

{{- define "payrails-mtls-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "payrails-mtls-proxy.fullname" -}}
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

{{- define "payrails-mtls-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "payrails-mtls-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "payrails-mtls-proxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "payrails-mtls-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "payrails-mtls-proxy.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The proxy port's address: listen, or the mode's default. */}}
{{- define "payrails-mtls-proxy.listen" -}}
{{- if .Values.listen }}{{ .Values.listen }}
{{- else if eq .Values.mode "gateway" }}0.0.0.0:8080
{{- else }}127.0.0.1:8080
{{- end }}
{{- end }}

{{/* The port of a HOST:PORT address. */}}
{{- define "payrails-mtls-proxy.port" -}}
{{- splitList ":" . | last }}
{{- end }}

{{/* "true" when the proxy port is on loopback only. */}}
{{- define "payrails-mtls-proxy.loopback" -}}
{{- $addr := include "payrails-mtls-proxy.listen" . }}
{{- $host := trimSuffix (printf ":%s" (include "payrails-mtls-proxy.port" $addr)) $addr }}
{{- if or (hasPrefix "127." $host) (eq $host "localhost") (eq $host "[::1]") }}true{{ end }}
{{- end }}

{{/* Where the certificate Secret of upstream $u is mounted: /certs for a lone upstream, as the image expects. */}}
{{- define "payrails-mtls-proxy.certDir" -}}
{{- if eq (len .root.Values.upstreams) 1 }}/certs{{ else }}/certs/{{ .u.name }}{{ end }}
{{- end }}

{{/* The folder where the Secret (or ConfigMap) of one purpose is mounted. */}}
{{- define "payrails-mtls-proxy.secretDir" -}}
/etc/payrails-mtls-proxy-secrets/{{ . }}
{{- end }}
