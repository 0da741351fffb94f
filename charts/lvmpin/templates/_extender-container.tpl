{{/*
The extender container of both workloads; (dict "root" $ "listen" "0.0.0.0:8080").
*/}}
{{- define "lvmpin.extenderContainer" -}}
{{- $v := .root.Values -}}
- name: extender
  image: {{ include "lvmpin.image" (dict "root" .root "image" $v.extender.image) }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - --listen={{ .listen }}
    - --mode={{ $v.extender.mode }}
    - --strategy={{ $v.extender.strategy }}
    - --log-format=json
    {{- with $v.extender.spareBytes }}
    - --spare-bytes={{ . }}
    {{- end }}
    {{- with $v.extender.agentSilence }}
    - --agent-silence={{ . }}
    {{- end }}
  env:
    - name: RUST_LOG
      value: {{ $v.extender.logLevel | quote }}
    {{- with .env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .ports }}
  ports:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  readinessProbe:
    httpGet:
      {{- with .probeHost }}
      host: {{ . }}
      {{- end }}
      path: /readyz
      port: {{ .probePort }}
    periodSeconds: 5
    timeoutSeconds: 3
  livenessProbe:
    httpGet:
      {{- with .probeHost }}
      host: {{ . }}
      {{- end }}
      path: /healthz
      port: {{ .probePort }}
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 6
  {{- with $v.extender.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
{{- end -}}
