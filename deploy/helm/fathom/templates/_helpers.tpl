{{- define "fathom.fullname" -}}
{{ .Release.Name }}-fathom
{{- end }}

{{- define "fathom.selectorLabels" -}}
app.kubernetes.io/name: fathom
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fathom.labels" -}}
{{ include "fathom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "fathom.apiKeySecret" -}}
{{ .Values.apiKeys.existingSecret | default (printf "%s-api-keys" (include "fathom.fullname" .)) }}
{{- end }}
