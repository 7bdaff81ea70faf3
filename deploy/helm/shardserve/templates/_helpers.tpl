{{/*
Names. The full name is cut to 36 characters so that the longest object name built on it
("<fullname>-coordinator-internal", "<fullname>-worker-prefill" plus a pod ordinal and the
StatefulSet's revision hash label) stays within Kubernetes' 63-character limits.
*/}}
{{- define "shardserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 36 | trimSuffix "-" }}
{{- end }}

{{- define "shardserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 36 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 36 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 36 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "shardserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shardserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shardserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "shardserve.labels" -}}
helm.sh/chart: {{ include "shardserve.chart" . }}
{{ include "shardserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "shardserve.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The address workers use for cluster control and the rendezvous store: the coordinator's
headless Service, which lists the coordinator even while it is not ready (it is not ready until
a group is, and groups form only through it).
*/}}
{{- define "shardserve.coordinatorAddress" -}}
{{- printf "%s-coordinator-internal.%s.svc.%s:%d" (include "shardserve.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.coordinator.port) }}
{{- end }}

{{/* The model volume, when model.volume.type is hostPath or pvc. */}}
{{- define "shardserve.modelVolumes" -}}
{{- if eq .Values.model.volume.type "hostPath" }}
- name: model
  hostPath:
    path: {{ required "model.volume.hostPath is required when model.volume.type is hostPath" .Values.model.volume.hostPath | quote }}
{{- else if eq .Values.model.volume.type "pvc" }}
- name: model
  persistentVolumeClaim:
    claimName: {{ required "model.volume.claimName is required when model.volume.type is pvc" .Values.model.volume.claimName | quote }}
    readOnly: true
{{- end }}
{{- end }}

{{- define "shardserve.modelVolumeMounts" -}}
{{- if ne .Values.model.volume.type "none" }}
- name: model
  mountPath: {{ .Values.model.volume.mountPath | quote }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Refuses values the processes would refuse at start, with the same reasons. */}}
{{- define "shardserve.validate" -}}
{{- if not (has .Values.device (list "cpu" "cuda")) }}
{{- fail (printf "device must be cpu or cuda, got %q" .Values.device) }}
{{- end }}
{{- if eq .Values.device "cuda" }}
{{- fail "device=cuda: the worker refuses cuda devices until the engine has a CUDA backend; use device=cpu" }}
{{- end }}
{{- if not (has .Values.model.volume.type (list "none" "hostPath" "pvc")) }}
{{- fail (printf "model.volume.type must be none, hostPath or pvc, got %q" .Values.model.volume.type) }}
{{- end }}
{{- if not (has .Values.worker.kvCacheDtype (list "f16" "f32")) }}
{{- fail (printf "worker.kvCacheDtype must be f16 or f32, got %q" .Values.worker.kvCacheDtype) }}
{{- end }}
{{- if not (has .Values.layout.moeCombine (list "allreduce" "alltoall")) }}
{{- fail (printf "layout.moeCombine must be allreduce or alltoall, got %q" .Values.layout.moeCombine) }}
{{- end }}
{{- $groups := add (int .Values.pools.both.groups) (int .Values.pools.prefill.groups) (int .Values.pools.decode.groups) }}
{{- if le (int $groups) 0 }}
{{- fail "the layout asks for no engine groups: set pools.both.groups, or pools.prefill.groups and pools.decode.groups" }}
{{- end }}
{{- if lt (int .Values.coordinator.maxInflightPerGroup) 1 }}
{{- fail "coordinator.maxInflightPerGroup must be >= 1" }}
{{- end }}
{{- end }}
