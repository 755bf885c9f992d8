{{/* Names, labels and the pieces every Tanu pod shares. */}}

{{- define "tanu.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tanu.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: tanu
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* selector labels of one component: (dict "ctx" $ "component" "gateway") */}}
{{- define "tanu.selector" -}}
app.kubernetes.io/name: tanu
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tanu.keysSecret" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-keys" (include "tanu.fullname" .)) -}}
{{- end -}}

{{- define "tanu.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "%s://%s-nats:4222" (ternary "tls" "nats" (not (empty .Values.tls.nats.caSecretName))) .Release.Name -}}
{{- else -}}
{{- required "externalNats.url is required when nats.enabled=false" .Values.externalNats.url -}}
{{- end -}}
{{- end -}}

{{/* the image of a component: (dict "ctx" $ "gpu" <count>) */}}
{{- define "tanu.image" -}}
{{- $tag := .ctx.Values.image.tag | default .ctx.Chart.AppVersion -}}
{{- if gt (int .gpu) 0 -}}{{- $tag = printf "%s%s" $tag .ctx.Values.image.gpuTagSuffix -}}{{- end -}}
{{- printf "%s:%s" .ctx.Values.image.repository $tag -}}
{{- end -}}

{{/* pod annotations: scraping, and a restart when the configuration changes */}}
{{- define "tanu.podAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ports.metrics | quote }}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end -}}

{{/* env shared by every service */}}
{{- define "tanu.env" -}}
- name: TANU_NATS_URL
  value: {{ include "tanu.natsUrl" . | quote }}
- name: TANU_GRPC_HOST
  value: "0.0.0.0"
- name: TANU_GRPC_PORT
  value: {{ .Values.ports.grpc | quote }}
- name: TANU_METRICS_PORT
  value: {{ .Values.ports.metrics | quote }}
- name: TANU_MODEL_DIR
  value: /opt/tanu/models
- name: TANU_MASTER_KEY_FILE
  value: /etc/tanu/keys/master.keyring
- name: TANU_AUDIT_KEY_FILE
  value: /etc/tanu/keys/audit.pem
- name: TANU_TOKEN_PUBLIC_KEY_FILE
  value: /etc/tanu/keys/issuer.pem.pub
- name: TANU_TENANTS_FILE
  value: /etc/tanu/keys/tenants.json
- name: TANU_SNAPSHOT_KEY_FILE
  value: /etc/tanu/keys/snapshot.key
- name: TANU_LOG_PSEUDONYM_KEY_FILE
  value: /etc/tanu/keys/log-pseudonym.key
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end -}}

{{/* container ports, probes and security shared by every service */}}
{{- define "tanu.containerCommon" -}}
imagePullPolicy: {{ .Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ include "tanu.fullname" . }}-config
ports:
  - name: grpc
    containerPort: {{ .Values.ports.grpc }}
    protocol: TCP
  - name: metrics
    containerPort: {{ .Values.ports.metrics }}
    protocol: TCP
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{/* resources with the GPU request: (dict "resources" ... "gpu" n) */}}
{{- define "tanu.resources" -}}
{{- $r := deepCopy .resources -}}
{{- if gt (int .gpu) 0 -}}
{{- $_ := set $r "limits" (merge (dict "nvidia.com/gpu" (int .gpu)) ($r.limits | default dict)) -}}
{{- $_ := set $r "requests" (merge (dict "nvidia.com/gpu" (int .gpu)) ($r.requests | default dict)) -}}
{{- end -}}
{{- toYaml $r -}}
{{- end -}}

{{- define "tanu.keysVolume" -}}
- name: keys
  secret:
    secretName: {{ include "tanu.keysSecret" . }}
    defaultMode: 0400
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "tanu.keysMount" -}}
- name: keys
  mountPath: /etc/tanu/keys
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "tanu.natsAuthSecret" -}}
{{- .Values.natsAuth.existingSecret | default .Values.natsAuth.secretName -}}
{{- end -}}

{{/* every service role's NATS identity, as a JSON list */}}
{{- define "tanu.natsRoles" -}}
{{- $roles := list "store" "gateway" "detector" "embedder" "operator" "searcher-staging" -}}
{{- /* during a rebalance the target layout's partitions get identities too */ -}}
{{- range $k := until (max (int .Values.config.TANU_PARTITIONS) (int .Values.searcher.staging.partitions) | int) -}}
{{- $roles = append $roles (printf "searcher-p%d" $k) -}}
{{- end -}}
{{- toJson $roles -}}
{{- end -}}

{{/* the NATS credentials a component's pods mount: (dict "ctx" $ "component" "gateway"),
or with "role" when the component's pods are of several roles (each searcher
StatefulSet: "searcher-p<k>" or "searcher-staging"). A pod mounts its own
role's password only. */}}
{{- define "tanu.natsVolume" -}}
{{- if .ctx.Values.natsAuth.enabled }}
{{- $role := .role | default .component }}
- name: nats-auth
  secret:
    secretName: {{ include "tanu.natsAuthSecret" .ctx }}
    defaultMode: 0400
    items:
      - key: {{ $role }}.password
        path: {{ $role }}.password
{{- end }}
{{- with .ctx.Values.tls.gateway.secretName }}
{{- if eq $.component "gateway" }}
- name: gateway-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0400
{{- end }}
{{- end }}
{{- with .ctx.Values.tls.nats.caSecretName }}
- name: nats-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0444
{{- end }}
{{- end -}}

{{- define "tanu.natsMount" -}}
{{- if .ctx.Values.natsAuth.enabled }}
- name: nats-auth
  mountPath: /etc/tanu/nats
  readOnly: true
{{- end }}
{{- if and .ctx.Values.tls.gateway.secretName (eq .component "gateway") }}
- name: gateway-tls
  mountPath: /etc/tanu/tls
  readOnly: true
{{- end }}
{{- if .ctx.Values.tls.nats.caSecretName }}
- name: nats-ca
  mountPath: /etc/tanu/nats-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* NATS credentials and TLS settings: (dict "ctx" $ "component" "gateway") */}}
{{- define "tanu.natsEnv" -}}
{{- if .ctx.Values.natsAuth.enabled }}
- name: TANU_NATS_CREDENTIALS_DIR
  value: /etc/tanu/nats
{{- end }}
{{- if .ctx.Values.tls.nats.caSecretName }}
- name: TANU_NATS_TLS_CA_FILE
  value: /etc/tanu/nats-ca/ca.crt
{{- end }}
{{- if and .ctx.Values.tls.gateway.secretName (eq .component "gateway") }}
- name: TANU_TLS_CERT_FILE
  value: /etc/tanu/tls/tls.crt
- name: TANU_TLS_KEY_FILE
  value: /etc/tanu/tls/tls.key
{{- end }}
{{- end -}}


{{/* readiness and liveness: gRPC health; for a gateway serving TLS (which
Kubernetes' gRPC probe cannot speak) the REST facade's /healthz over HTTPS,
which says 503 exactly when the gateway cannot serve.
(dict "ctx" $ "component" "gateway") */}}
{{- define "tanu.probes" -}}
{{- $v := .ctx.Values }}
{{- range $kind, $threshold := dict "readinessProbe" $v.probes.readinessFailureThreshold "livenessProbe" $v.probes.livenessFailureThreshold }}
{{ $kind }}:
  {{- if and (eq $.component "gateway") $v.tls.gateway.secretName }}
  httpGet:
    path: /healthz
    port: {{ $v.ports.rest }}
    scheme: HTTPS
  {{- else }}
  grpc:
    port: {{ $v.ports.grpc }}
  {{- end }}
  periodSeconds: {{ $v.probes.periodSeconds }}
  failureThreshold: {{ $threshold }}
{{- end }}
{{- end -}}
