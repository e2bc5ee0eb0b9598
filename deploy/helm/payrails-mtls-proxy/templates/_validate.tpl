{{/*
payrails-mtls-proxy.validate fails the render, naming the value, on what would make an open
proxy, a pod that cannot start, or a file the proxy is told to read that no Secret provides.
The binary checks the rest of the configuration when it starts.
*/}}
{{- define "payrails-mtls-proxy.validate" -}}
{{- $v := .Values }}
{{- if not (has $v.mode (list "gateway" "sidecar")) }}
{{- fail (printf "payrails-mtls-proxy: mode is %q; use gateway (a Deployment behind a Service) or sidecar (a container your own chart includes)" (toString $v.mode)) }}
{{- end }}
{{- if not $v.image.repository }}
{{- fail "payrails-mtls-proxy: image.repository is empty; give the image you built from the repository's Dockerfile, e.g. registry.example.com/payrails-mtls-proxy" }}
{{- end }}
{{- if not (include "payrails-mtls-proxy.loopback" .) }}
{{- $why := printf "the proxy listens on %s (mode %s), where other pods can reach it, and it presents the merchant's client certificate: the chart refuses to render an open proxy" (include "payrails-mtls-proxy.listen" .) $v.mode }}
{{- if not $v.access.allowCidrs }}
{{- fail (printf "payrails-mtls-proxy: access.allowCidrs is required: %s; list the clients' networks, e.g. access.allowCidrs: [10.0.0.0/8] for the pod network" $why) }}
{{- end }}
{{- if not $v.access.proxyAuthSecret }}
{{- fail (printf "payrails-mtls-proxy: access.proxyAuthSecret is required: %s; create a Secret with user:password lines under the key auth (kubectl create secret generic payrails-proxy-auth --from-file=auth=./users) and set access.proxyAuthSecret: payrails-proxy-auth" $why) }}
{{- end }}
{{- end }}
{{- /* The container's environment beats the configuration file, and Kubernetes takes the last
entry of a name: an extraEnv entry would override what the chart sets, unchecked by the rules
above (PAYRAILS_PROXY_LISTEN and _ALLOW_CIDRS would make an open proxy). Every variable the
binary reads in place of a chart value (config/env.go) is refused, naming the value to set;
GOMEMLIMIT is the chart's too, and PAYRAILS_PROXY_CONFIG names another file than the chart's
(cmd/payrails-mtls-proxy/serve.go). */}}
{{- $chartEnv := dict
  "PAYRAILS_PROXY_LISTEN" "listen"
  "PAYRAILS_PROXY_ADMIN_LISTEN" "adminListen"
  "PAYRAILS_PROXY_ALLOW_CIDRS" "access.allowCidrs"
  "PAYRAILS_PROXY_CONNECT" "connect"
  "PAYRAILS_PROXY_LOG_LEVEL" "log.level"
  "PAYRAILS_PROXY_LOG_FORMAT" "log.format"
  "PAYRAILS_PROXY_UPSTREAM" "upstreams[].url"
  "PAYRAILS_PROXY_ADDRESS" "upstreams[].address"
  "PAYRAILS_PROXY_CERT_DIR" "upstreams[].certificateSecret"
  "PAYRAILS_PROXY_CERT" "upstreams[].certificateSecret"
  "PAYRAILS_PROXY_KEY" "upstreams[].certificateSecret"
  "PAYRAILS_PROXY_KEY_PASSPHRASE_FILE" "upstreams[].keyPassphraseSecret"
  "PAYRAILS_PROXY_CA_FILE" "upstreams[].caConfigMap"
  "PAYRAILS_PROXY_KEY_URI" "upstreams[].keyUri"
  "GOMEMLIMIT" "resources.limits.memory" }}
{{- range $i, $e := $v.extraEnv }}
{{- $name := "" }}
{{- if kindIs "map" $e }}{{ $name = toString (get $e "name") }}{{ end }}
{{- with get $chartEnv $name }}
{{- fail (printf "payrails-mtls-proxy: extraEnv[%d] is %s, which the proxy reads in place of the chart's %s (the environment beats the configuration file, and of two env entries with one name the later wins), unchecked by the chart; set %s instead and remove the entry from extraEnv" $i $name . .) }}
{{- end }}
{{- if eq $name "PAYRAILS_PROXY_CONFIG" }}
{{- fail (printf "payrails-mtls-proxy: extraEnv[%d] is PAYRAILS_PROXY_CONFIG; the chart writes the configuration file from its values and passes it with --config: set the values instead (proxy authentication is access.proxyAuthSecret) and remove the entry from extraEnv" $i) }}
{{- end }}
{{- end }}
{{- if not $v.upstreams }}
{{- fail "payrails-mtls-proxy: upstreams is empty; list at least one Payrails environment, e.g. upstreams: [{name: live, url: https://api.acme.payrails.io, certificateSecret: payrails-client-cert}]" }}
{{- end }}
{{- $names := dict }}
{{- range $i, $u := $v.upstreams }}
{{- $key := printf "upstreams[%d]" $i }}
{{- if not (regexMatch "^[a-z0-9][a-z0-9_-]*$" (toString $u.name)) }}
{{- fail (printf "payrails-mtls-proxy: %s.name is %q; give each upstream a name of lowercase letters, digits, - and _ (e.g. live, staging): it names the upstream in metrics and its mount /certs/NAME" $key (toString $u.name)) }}
{{- end }}
{{- if hasKey $names $u.name }}
{{- fail (printf "payrails-mtls-proxy: %s.name %q is used twice; upstream names must be unique" $key $u.name) }}
{{- end }}
{{- $_ := set $names $u.name true }}
{{- if not (hasPrefix "https://" (toString $u.url)) }}
{{- fail (printf "payrails-mtls-proxy: %s.url is %q; write the Payrails API base URL with https://, e.g. https://api.acme.payrails.io" $key (toString $u.url)) }}
{{- end }}
{{- if not $u.certificateSecret }}
{{- fail (printf "payrails-mtls-proxy: %s.certificateSecret is empty; name the Secret with the client certificate and key (kubectl create secret generic payrails-client-cert --from-file=domain.pem --from-file=domain.key)" $key) }}
{{- end }}
{{- if $u.via }}
{{- $port := regexFind "[0-9]+/?$" (toString $u.via) | trimSuffix "/" | atoi }}
{{- if or (not (regexMatch "(?i)^http://([a-z0-9]([a-z0-9.-]*[a-z0-9])?|\\[[0-9a-f:.]+\\]):[0-9]{1,5}/?$" (toString $u.via))) (lt $port 1) (gt $port 65535) }}
{{- fail (printf "payrails-mtls-proxy: %s.via is %q; write the egress proxy as http://HOST:PORT (no https://, user, path or query: the connection to it is a plain CONNECT, TLS to Payrails stays end to end; credentials go in %s.viaAuthSecret)" $key (toString $u.via) $key) }}
{{- end }}
{{- else if $u.viaAuthSecret }}
{{- fail (printf "payrails-mtls-proxy: %s.viaAuthSecret is set but %s.via is empty; give the egress proxy as via: http://HOST:PORT, or remove viaAuthSecret" $key $key) }}
{{- end }}
{{- with $u.token }}
{{- if and .clientSecretSecret (not .clientId) }}
{{- fail (printf "payrails-mtls-proxy: %s.token.clientSecretSecret is set but %s.token.clientId is empty; give the Client ID from the Payrails dashboard" $key $key) }}
{{- end }}
{{- if and .clientId (not .clientSecretSecret) }}
{{- fail (printf "payrails-mtls-proxy: %s.token.clientId is set but %s.token.clientSecretSecret is empty; name a Secret with the client secret under the key client-secret (kubectl create secret generic payrails-client-secret --from-file=client-secret=./secret)" $key $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq (toString $v.connect) "mitm") (not $v.mitm.caSecret) }}
{{- fail "payrails-mtls-proxy: connect is mitm but mitm.caSecret is empty; make the local CA with `payrails-mtls-proxy ca init --out-dir mitm`; then `kubectl create secret generic payrails-mitm-ca --from-file=mitm/` and set mitm.caSecret: payrails-mitm-ca" }}
{{- end }}
{{- if eq $v.mode "gateway" }}
{{- $g := $v.gateway }}
{{- if and (not $g.autoscaling.enabled) (lt (int $g.replicas) 2) }}
{{- fail (printf "payrails-mtls-proxy: gateway.replicas is %v; a gateway needs at least 2, so that a node drain or a rollout never leaves the clients without a proxy" $g.replicas) }}
{{- end }}
{{- if and $g.autoscaling.enabled (lt (int $g.autoscaling.minReplicas) 2) }}
{{- fail (printf "payrails-mtls-proxy: gateway.autoscaling.minReplicas is %v; a gateway needs at least 2" $g.autoscaling.minReplicas) }}
{{- end }}
{{- end }}
{{- end }}
