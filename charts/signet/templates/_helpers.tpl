{{/* The namespace of the operator (and, unless trustNamespace is set, of the key Secrets). */}}
{{- define "signet.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end }}

{{- define "signet.trustNamespace" -}}
{{- default (include "signet.namespace" .) .Values.trustNamespace -}}
{{- end }}

{{/* repository@digest, else repository:tag (default v<appVersion>). */}}
{{- define "signet.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}
{{- end }}

{{/* Labels of every object; selectors use config/'s own labels, which never change. */}}
{{- define "signet.labels" -}}
app.kubernetes.io/name: signet
app.kubernetes.io/part-of: signet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
