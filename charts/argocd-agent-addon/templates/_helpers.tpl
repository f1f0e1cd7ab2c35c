{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "argocd-agent-addon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the manager's namespaced and RBAC objects: fullnameOverride, else the release name
if it already contains the chart name, else "<release>-<chart>". 63 characters at most, the
limit of a label value.
*/}}
{{- define "argocd-agent-addon.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "argocd-agent-addon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object the chart creates.
*/}}
{{- define "argocd-agent-addon.labels" -}}
helm.sh/chart: {{ include "argocd-agent-addon.chart" . }}
app.kubernetes.io/name: {{ include "argocd-agent-addon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: argocd-agent-addon
{{- end }}

{{/*
Labels that select the manager pods. They must never change between releases: a Deployment's
selector is immutable.
*/}}
{{- define "argocd-agent-addon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "argocd-agent-addon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end }}

{{/*
Manager image: repository and tag, the tag defaulting to the chart's appVersion; with a digest
(a released chart has one), pinned to it: repository:tag@digest runs that digest.
*/}}
{{- define "argocd-agent-addon.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- with .Values.image.digest }}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" .) }}
{{- fail (printf "image.digest %q: want sha256: and 64 hex digits" .) }}
{{- end }}
{{- $ref = printf "%s@%s" $ref . }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
Namespace of the Placement and its ManagedClusterSetBindings: placement.namespace, else the
release namespace.
*/}}
{{- define "argocd-agent-addon.placementNamespace" -}}
{{- .Values.placement.namespace | default .Release.Namespace }}
{{- end }}

{{/*
Values the manager or the add-on would refuse at run time, refused at install time instead, with
the value to fix. Included once, by the Deployment: one failure stops the whole render.
*/}}
{{- define "argocd-agent-addon.validate" -}}
{{- $subjects := list "cluster-name" "ocm" }}
{{- if not (has .Values.certificate.subject $subjects) }}
{{- fail (printf "certificate.subject %q: want one of %s" .Values.certificate.subject (join ", " $subjects)) }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas %d needs leaderElection.enabled: replicas without leader election would all approve, sign and deploy at once" (int .Values.replicas)) }}
{{- end }}
{{- if not .Values.caSecret.namespace }}
{{- fail "caSecret.namespace is required: the namespace of the CA secret the manager signs agent certificates with" }}
{{- end }}
{{- if not .Values.caSecret.name }}
{{- fail "caSecret.name is required: the name of the CA secret the manager signs agent certificates with" }}
{{- end }}
{{- $modes := list "managed" "autonomous" }}
{{- if not (has .Values.agent.mode $modes) }}
{{- fail (printf "agent.mode %q: want one of %s" .Values.agent.mode (join ", " $modes)) }}
{{- end }}
{{- $levels := list "trace" "debug" "info" "warn" "error" }}
{{- if not (has .Values.agent.logLevel $levels) }}
{{- fail (printf "agent.logLevel %q: want one of %s" .Values.agent.logLevel (join ", " $levels)) }}
{{- end }}
{{- if not (gt (float64 .Values.kubeAPI.qps) 0.0) }}
{{- fail (printf "kubeAPI.qps %v: want more than 0 requests per second" .Values.kubeAPI.qps) }}
{{- end }}
{{- if lt (float64 .Values.kubeAPI.burst) (float64 .Values.kubeAPI.qps) }}
{{- fail (printf "kubeAPI.burst %v: want at least kubeAPI.qps (%v)" .Values.kubeAPI.burst .Values.kubeAPI.qps) }}
{{- end }}
{{- if not .Values.placement.name }}
{{- fail "placement.name is required: the Placement whose clusters get the agent" }}
{{- end }}
{{- if hasKey .Values.pki.principal "deployment" }}
{{- fail "pki.principal.deployment has moved to principal.deployment: the agents also follow that Deployment's image" }}
{{- end }}
{{- if and .Values.clusterSecrets.enabled (not (regexMatch "^[^:/]+:[0-9]+$" (toString .Values.clusterSecrets.resourceProxyAddress))) }}
{{- fail (printf "clusterSecrets.resourceProxyAddress %q: want HOST:PORT of the principal's resource proxy" (toString .Values.clusterSecrets.resourceProxyAddress)) }}
{{- end }}
{{- if and .Values.applicationSets.placementGenerator (not .Values.clusterSecrets.enabled) }}
{{- fail "applicationSets.placementGenerator needs clusterSecrets.enabled: the generator matches each PlacementDecision's clusters against the cluster secrets the manager keeps" }}
{{- end }}
{{- if and .Values.agent.destinationBasedMapping (ne .Values.agent.mode "managed") }}
{{- fail "agent.destinationBasedMapping is for managed agents (agent.mode managed): an autonomous agent owns its Applications" }}
{{- end }}
{{- range $i, $g := .Values.clusterSecrets.groups }}
{{- if not (and $g.placement $g.namespace) }}
{{- fail (printf "clusterSecrets.groups[%d]: placement and namespace are required" $i) }}
{{- end }}
{{- if not (regexMatch "^[^:/]+:[0-9]+$" (toString $g.resourceProxyAddress)) }}
{{- fail (printf "clusterSecrets.groups[%d].resourceProxyAddress %q: want HOST:PORT of that principal's resource proxy" $i (toString $g.resourceProxyAddress)) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A list of strings as CEL string literals, comma-separated. Label keys hold no quote or
backslash; usernames, from values, have backslashes and single quotes escaped.
*/}}
{{- define "argocd-agent-addon.celStrings" -}}
{{- $out := list }}
{{- range . }}
{{- $out = append $out (printf "'%s'" (. | replace "\\" "\\\\" | replace "'" "\\'")) }}
{{- end }}
{{- join ", " $out }}
{{- end }}

{{/*
Namespace of the Argo CD cluster secrets: clusterSecrets.namespace, else the CA secret's.
*/}}
{{- define "argocd-agent-addon.clusterSecretNamespace" -}}
{{- default .Values.caSecret.namespace .Values.clusterSecrets.namespace -}}
{{- end }}

{{/*
Every namespace the manager keeps cluster secrets in, the default's and each group's, once each,
comma-separated.
*/}}
{{- define "argocd-agent-addon.clusterSecretNamespaces" -}}
{{- $out := list (include "argocd-agent-addon.clusterSecretNamespace" .) }}
{{- range .Values.clusterSecrets.groups }}
{{- $out = append $out .namespace }}
{{- end }}
{{- join "," (uniq $out) }}
{{- end }}
