{{- define "vif-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vif-operator.labels" -}}
app.kubernetes.io/name: vif-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "vif-operator.selector" -}}
app.kubernetes.io/name: vif-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "vif-operator.serviceAccountName" -}}
{{- default (include "vif-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "vif-operator.peering" -}}
{{- include "vif-operator.fullname" . -}}
{{- end -}}

{{/* The rules for the objects an InferenceModel owns, in the namespaces it lives in. */}}
{{- define "vif-operator.modelRules" -}}
- apiGroups: [inference.vif.dev]
  resources: [inferencemodels]
  verbs: [get, list, watch, patch]
- apiGroups: [inference.vif.dev]
  resources: [inferencemodels/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [get, list, watch, create, patch, delete]
# KEDA's ScaledObject, instead of the HPA where KEDA is installed (docs/autoscaling.md).
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, create, patch, delete]
# The Gateway API Inference Extension's InferencePool, where its CRD is installed (spec.inferencePool).
- apiGroups: [inference.networking.k8s.io]
  resources: [inferencepools]
  verbs: [get, list, watch, create, patch, delete]
# The shared download of a Hugging Face model (spec.model.cache).
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch, create, patch, delete]
# Its progress: the operator lists a downloading model's pods to ask them (read only).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
# The replicas' NetworkPolicy (spec.networkPolicy).
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
# The router's identity (spec.routing): a Role and its RoleBinding per model.
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [get, list, watch, create, patch, delete]
# What that Role grants: Kubernetes lets the operator grant only rights it holds itself (RBAC escalation rule).
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create]
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end -}}

{{/*
A list of patterns that know `*` and `?` only (as operator/policy.py reads them) as one anchored regular expression,
quoted for CEL; an empty list matches no name.
*/}}
{{- define "vif-operator.globRegex" -}}
{{- $res := list }}
{{- range . }}
{{- $res = append $res (regexQuoteMeta . | replace "\\*" ".*" | replace "\\?" ".") }}
{{- end }}
{{- toJson (printf "^(%s)$" (join "|" $res)) }}
{{- end }}

{{/* The Redis the routers share tenants' limits in: the chart's value, else the chart's own when it installs one. */}}
{{- define "vif-operator.redisUrl" -}}
{{- if .Values.tenants.redisUrl -}}
{{- .Values.tenants.redisUrl -}}
{{- else if .Values.tenants.redis.install -}}
{{- printf "redis://%s-redis.%s.svc:6379/0" (include "vif-operator.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}
