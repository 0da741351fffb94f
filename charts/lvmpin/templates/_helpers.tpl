{{/*
Labels of an lvmpin object: app.kubernetes.io/name (when given), the
component (when given), part-of, and .Values.commonLabels.
Call with (dict "root" $ "name" "lvmpin-agent" "component" "node-agent").
*/}}
{{- define "lvmpin.labels" -}}
{{- $l := dict "app.kubernetes.io/part-of" "lvmpin" -}}
{{- with .name }}{{ $_ := set $l "app.kubernetes.io/name" . }}{{ end -}}
{{- with .component }}{{ $_ := set $l "app.kubernetes.io/component" . }}{{ end -}}
{{- with .root.Values.commonLabels }}{{ $l = merge $l . }}{{ end -}}
{{- toYaml $l -}}
{{- end -}}

{{/* Image reference of a component: (dict "root" $ "image" .Values.agent.image). */}}
{{- define "lvmpin.image" -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{ .image.repository }}:{{ $tag }}
{{- end -}}

{{/* Whether the extender is installed. */}}
{{- define "lvmpin.extender" -}}
{{- if eq .Values.scheduler.setup "extender" }}true{{ else if eq .Values.scheduler.setup "no-extender" }}{{ else }}{{ fail (printf "scheduler.setup must be extender or no-extender, not %q" .Values.scheduler.setup) }}{{ end -}}
{{- end -}}

{{/* Where kube-scheduler reaches the extender. */}}
{{- define "lvmpin.extenderURL" -}}
{{- if eq .Values.extender.workload "DaemonSet" -}}
http://127.0.0.1:8099
{{- else if .Values.extender.clusterIP -}}
http://{{ .Values.extender.clusterIP }}:8080
{{- else -}}
http://CLUSTER-IP:8080
{{- end -}}
{{- end -}}

{{/*
The KubeSchedulerConfiguration this set-up needs, as in manifests/scheduler/
(decisive.yaml, advisory.yaml, decisive-managed.yaml, no-extender.yaml).
*/}}
{{- define "lvmpin.schedulerConfiguration" -}}
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: /etc/kubernetes/scheduler.conf
percentageOfNodesToScore: 100
{{- if include "lvmpin.extender" . }}
extenders:
  - urlPrefix: {{ include "lvmpin.extenderURL" . }}
    filterVerb: filter
    {{- if eq .Values.extender.mode "advisory" }}
    prioritizeVerb: prioritize
    weight: 5
    {{- end }}
    bindVerb: bind
    nodeCacheCapable: true
    enableHTTPS: false
    httpTimeout: {{ .Values.scheduler.httpTimeout }}
    ignorable: {{ .Values.scheduler.ignorable }}
    {{- if .Values.scheduler.managedResource }}
    managedResources:
      - name: lvmpin.io/local-storage
        ignoredByScheduler: true
    {{- end }}
{{- end }}
{{- end -}}
