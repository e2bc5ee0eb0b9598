{{/*
payrails-mtls-proxy.config is the proxy's config.yaml: every key of the file format, from the
values (camelCase there), with the paths where the Secrets are mounted. listen, admin_listen
and the lone upstream's certificate folder are in the container's environment, which beats
the file (the image sets them with ENV).
*/}}
{{- define "payrails-mtls-proxy.config" -}}
{{- $root := . }}
{{- $v := .Values -}}
log:
  level: {{ $v.log.level | quote }}
  format: {{ $v.log.format | quote }}
access:
  {{- with $v.access.allowCidrs }}
  allow_cidrs: {{ toJson . }}
  {{- end }}
  proxy_auth_file: {{ if $v.access.proxyAuthSecret }}{{ include "payrails-mtls-proxy.secretDir" "proxy-auth" }}/auth{{ else }}""{{ end }}
  max_connections: {{ $v.access.maxConnections | default 512 }}
upstreams:
{{- range $u := $v.upstreams }}
{{- $t := $u.token | default dict }}
  - name: {{ $u.name | quote }}
    url: {{ $u.url | quote }}
    address: {{ $u.address | default "" | quote }}
    default: {{ $u.default | default false }}
    cert_dir: {{ include "payrails-mtls-proxy.certDir" (dict "root" $root "u" $u) }}
    key_passphrase_file: {{ if $u.keyPassphraseSecret }}{{ include "payrails-mtls-proxy.secretDir" (printf "%s-passphrase" $u.name) }}/passphrase{{ else }}""{{ end }}
    ca_file: {{ if $u.caConfigMap }}{{ include "payrails-mtls-proxy.secretDir" (printf "%s-ca" $u.name) }}/ca.pem{{ else }}""{{ end }}
    {{- $uri := $u.keyUri | default "" }}
    {{- if and $uri $u.pkcs11PinSecret }}
    {{- $uri = printf "%s%spin-source=file:%s/pin" $uri (ternary "&" "?" (contains "?" $uri)) (include "payrails-mtls-proxy.secretDir" (printf "%s-pkcs11-pin" $u.name)) }}
    {{- end }}
    key_uri: {{ $uri | quote }}
    token:
      client_id: {{ $t.clientId | default "" | quote }}
      client_secret_file: {{ if $t.clientSecretSecret }}{{ include "payrails-mtls-proxy.secretDir" (printf "%s-token" $u.name) }}/client-secret{{ else }}""{{ end }}
    verify_path: {{ if hasKey $u "verifyPath" }}{{ $u.verifyPath | quote }}{{ else }}"/"{{ end }}
    warm_connections: {{ if hasKey $u "warmConnections" }}{{ $u.warmConnections }}{{ else }}1{{ end }}
    via: {{ $u.via | default "" | quote }}
    via_auth_file: {{ if $u.viaAuthSecret }}{{ include "payrails-mtls-proxy.secretDir" (printf "%s-via-auth" $u.name) }}/auth{{ else }}""{{ end }}
{{- end }}
reload:
  debounce: {{ $v.reload.debounce | quote }}
  poll_interval: {{ $v.reload.pollInterval | quote }}
  verify: {{ $v.reload.verify }}
retry:
  attempts: {{ $v.retry.attempts }}
  backoff: {{ $v.retry.backoff | quote }}
  max_backoff: {{ $v.retry.maxBackoff | quote }}
  idempotency_headers: {{ toJson $v.retry.idempotencyHeaders }}
  add_idempotency_key: {{ $v.retry.addIdempotencyKey }}
  max_body: {{ $v.retry.maxBody | quote }}
timeouts:
  dial: {{ $v.timeouts.dial | quote }}
  tls_handshake: {{ $v.timeouts.tlsHandshake | quote }}
  response_header: {{ $v.timeouts.responseHeader | quote }}
  idle_conn: {{ $v.timeouts.idleConn | quote }}
  shutdown: {{ $v.timeouts.shutdown | quote }}
connect: {{ $v.connect | quote }}
mitm:
  ca_cert_file: {{ if $v.mitm.caSecret }}{{ include "payrails-mtls-proxy.secretDir" "mitm-ca" }}/ca.pem{{ else }}""{{ end }}
  ca_key_file: {{ if $v.mitm.caSecret }}{{ include "payrails-mtls-proxy.secretDir" "mitm-ca" }}/ca.key{{ else }}""{{ end }}
{{- end }}
