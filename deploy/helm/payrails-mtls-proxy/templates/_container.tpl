{{/*
The proxy's container and its volumes, the same in both modes: the gateway's Deployment uses
them, and in sidecar mode your chart does, with this chart as a dependency:

  spec:
    securityContext:
      fsGroup: 65532          # the proxy's group may read the Secret files (mode 0400 -> 0440)
    terminationGracePeriodSeconds: 45
    initContainers:           # a native sidecar (Kubernetes 1.29+): up before your app, down after it
      - {{- include "payrails-mtls-proxy.sidecar" (index .Subcharts "payrails-mtls-proxy") | nindent 8 }}
    volumes:
      {{- include "payrails-mtls-proxy.volumes" (index .Subcharts "payrails-mtls-proxy") | nindent 6 }}

deploy/helm/examples/legacy-billing is such a chart.
*/}}

{{- define "payrails-mtls-proxy.sidecar" -}}
{{- include "payrails-mtls-proxy.validate" . }}
{{- if ne .Values.mode "sidecar" }}
{{- fail (printf "payrails-mtls-proxy: the sidecar template is included, but mode is %q; set mode: sidecar in the values of the payrails-mtls-proxy dependency" .Values.mode) }}
{{- end }}
{{- include "payrails-mtls-proxy.container" . }}
{{- end }}

{{- define "payrails-mtls-proxy.container" -}}
{{- $root := . }}
{{- $v := .Values }}
{{- $one := eq (len $v.upstreams) 1 -}}
name: payrails-mtls-proxy
image: {{ include "payrails-mtls-proxy.image" . }}
{{- with $v.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- if eq $v.mode "sidecar" }}
restartPolicy: Always
{{- end }}
args: ["serve", "--config", "/etc/payrails-mtls-proxy/config.yaml"]
env:
  # The environment beats the configuration file, and the image sets these three.
  - name: PAYRAILS_PROXY_LISTEN
    value: {{ include "payrails-mtls-proxy.listen" . | quote }}
  - name: PAYRAILS_PROXY_ADMIN_LISTEN
    value: {{ $v.adminListen | quote }}
  # A lone upstream's Secret is at /certs, the image's folder; several upstreams have their
  # folders in the file, and an empty variable counts as unset.
  - name: PAYRAILS_PROXY_CERT_DIR
    value: {{ if $one }}/certs{{ else }}""{{ end }}
  - name: GOMEMLIMIT
    valueFrom:
      resourceFieldRef:
        resource: limits.memory
  {{- with $v.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  {{- if eq $v.mode "gateway" }}
  - name: proxy
    containerPort: {{ include "payrails-mtls-proxy.port" (include "payrails-mtls-proxy.listen" .) | int }}
  {{- end }}
  - name: admin
    containerPort: {{ include "payrails-mtls-proxy.port" $v.adminListen | int }}
startupProbe:
  httpGet: {path: /healthz, port: admin}
  periodSeconds: 1
  failureThreshold: 30
livenessProbe:
  httpGet: {path: /healthz, port: admin}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: admin}
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
resources:
  {{- toYaml $v.resources | nindent 2 }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
volumeMounts:
  {{- range $i, $u := $v.upstreams }}
  - name: payrails-mtls-proxy-certs{{ if not $one }}-{{ $i }}{{ end }}
    mountPath: {{ include "payrails-mtls-proxy.certDir" (dict "root" $root "u" $u) }}
    readOnly: true
  {{- end }}
  - name: payrails-mtls-proxy-config
    mountPath: /etc/payrails-mtls-proxy
    readOnly: true
  {{- range $m := include "payrails-mtls-proxy.mounts" . | fromYamlArray }}
  - name: {{ $m.volume }}
    mountPath: {{ include "payrails-mtls-proxy.secretDir" $m.dir }}
    readOnly: true
  {{- end }}
{{- end }}

{{/*
payrails-mtls-proxy.mounts lists the optional Secrets and ConfigMaps as YAML: each with its
volume name, its folder under /etc/payrails-mtls-proxy-secrets, and its source.
*/}}
{{- define "payrails-mtls-proxy.mounts" -}}
{{- $v := .Values }}
{{- if $v.access.proxyAuthSecret }}
- {volume: payrails-mtls-proxy-proxy-auth, dir: proxy-auth, secret: {{ $v.access.proxyAuthSecret | quote }}}
{{- end }}
{{- if $v.mitm.caSecret }}
- {volume: payrails-mtls-proxy-mitm-ca, dir: mitm-ca, secret: {{ $v.mitm.caSecret | quote }}}
{{- end }}
{{- range $i, $u := $v.upstreams }}
{{- if $u.keyPassphraseSecret }}
- {volume: payrails-mtls-proxy-passphrase-{{ $i }}, dir: {{ printf "%s-passphrase" $u.name | quote }}, secret: {{ $u.keyPassphraseSecret | quote }}}
{{- end }}
{{- if $u.pkcs11PinSecret }}
- {volume: payrails-mtls-proxy-pkcs11-pin-{{ $i }}, dir: {{ printf "%s-pkcs11-pin" $u.name | quote }}, secret: {{ $u.pkcs11PinSecret | quote }}}
{{- end }}
{{- if $u.caConfigMap }}
- {volume: payrails-mtls-proxy-ca-{{ $i }}, dir: {{ printf "%s-ca" $u.name | quote }}, configMap: {{ $u.caConfigMap | quote }}}
{{- end }}
{{- if and $u.token $u.token.clientSecretSecret }}
- {volume: payrails-mtls-proxy-token-{{ $i }}, dir: {{ printf "%s-token" $u.name | quote }}, secret: {{ $u.token.clientSecretSecret | quote }}}
{{- end }}
{{- if $u.viaAuthSecret }}
- {volume: payrails-mtls-proxy-via-auth-{{ $i }}, dir: {{ printf "%s-via-auth" $u.name | quote }}, secret: {{ $u.viaAuthSecret | quote }}}
{{- end }}
{{- end }}
{{- end }}

{{/* The volumes the container mounts: one list, for a pod spec's volumes. */}}
{{- define "payrails-mtls-proxy.volumes" -}}
{{- include "payrails-mtls-proxy.volumeList" . | trim }}
{{- end }}

{{- define "payrails-mtls-proxy.volumeList" -}}
{{- $v := .Values }}
{{- $one := eq (len $v.upstreams) 1 }}
{{- range $i, $u := $v.upstreams }}
- name: payrails-mtls-proxy-certs{{ if not $one }}-{{ $i }}{{ end }}
  secret:
    secretName: {{ $u.certificateSecret }}
    defaultMode: 0400
{{- end }}
- name: payrails-mtls-proxy-config
  configMap:
    name: {{ include "payrails-mtls-proxy.fullname" . }}
{{- range $m := include "payrails-mtls-proxy.mounts" . | fromYamlArray }}
- name: {{ $m.volume }}
  {{- if $m.secret }}
  secret:
    secretName: {{ $m.secret }}
    defaultMode: 0400
  {{- else }}
  configMap:
    name: {{ $m.configMap }}
  {{- end }}
{{- end }}
{{- end }}
