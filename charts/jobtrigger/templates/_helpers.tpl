{{/* Chart name (nameOverride wins). */}}
{{- define "jobtrigger.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of every object of the release (fullnameOverride wins). */}}
{{- define "jobtrigger.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "jobtrigger.labels" -}}
{{ include "jobtrigger.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "jobtrigger.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobtrigger.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "jobtrigger.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jobtrigger.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The leader election Lease: one per release, so several releases in one namespace do not share a leader. */}}
{{- define "jobtrigger.leaseName" -}}
{{- default (printf "%s-leader" (include "jobtrigger.fullname" .)) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "jobtrigger.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
The permissions the controller needs where JobTriggers live: in a ClusterRole (watchNamespaces empty) or in a
Role per watched namespace. Every rule says why; docs/rbac.md has the full story.
*/}}
{{- define "jobtrigger.rules" -}}
# JobTriggers: list/watch feed the controller's cache; get re-reads one; patch resets an errand's
# `strategy: now` to `manual` after its run (merge patch with a resourceVersion precondition).
- apiGroups: [jobtrigger.dev]
  resources: [jobtriggers]
  verbs: [get, list, watch, patch]
# Status is written only by merge patch (conditions, hashes, last run); no get/update needed.
- apiGroups: [jobtrigger.dev]
  resources: [jobtriggers/status]
  verbs: [patch]
# Jobs (and output objects) carry an ownerReference to their JobTrigger with blockOwnerDeletion: true; where the
# OwnerReferencesPermissionEnforcement admission plugin is on (e.g. OpenShift) that needs update on finalizers.
- apiGroups: [jobtrigger.dev]
  resources: [jobtriggers/finalizers]
  verbs: [update]
# The Jobs it runs: list/watch (label jobtrigger.dev/owner) to know what is active and finished; create
# (also the server-side dry run that validates a JobTrigger's Job template); delete for history limits and
# concurrencyPolicy Replace. No update; patch only with output.enabled (below).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# Events on JobTriggers (kubectl describe jt): create, and patch to count repeats instead of duplicating them.
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.rbac.watchAll }}
# rbac.watchAll: read (never write) every kind, so JobTriggers may watch anything. Not least privilege: this
# includes Secrets of every namespace the role applies to.
- apiGroups: ["*"]
  resources: ["*"]
  verbs: [get, list, watch]
{{- else }}
{{- range $i, $w := .Values.rbac.watch }}
# rbac.watch[{{ $i }}]: kinds JobTriggers may watch (resource and pod triggers, rerunOnConfigChange). Read only:
# the controller keeps hashes of the watched fields, never the objects' data.
- apiGroups: {{ toJson $w.apiGroups }}
  resources: {{ toJson $w.resources }}
  verbs: [get, list, watch]
{{- end }}
{{- end }}
{{- if .Values.output.enabled }}
# output.enabled (spec.output): a finished Job's output is persisted into Secrets/ConfigMaps in the JobTrigger's
# namespace. list finds the previous output and its versions (by label), create/update (PUT with a
# resourceVersion precondition) write it, delete prunes versions beyond keepVersions.
- apiGroups: [""]
  resources: [secrets, configmaps]
  verbs: [list, create, update, delete]
# output.enabled: the output is read from the finished Job's pods (termination messages, label job-name) ...
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# ... or from their logs (spec.output.source: Logs).
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# output.enabled: a Job whose output was handled is marked (annotation jobtrigger.dev/output), exactly once.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [patch]
{{- end }}
{{- end -}}

{{/* The Secret holding the hash key: hashKey.existingSecret, else <fullname>-hash-key (if the chart creates it). */}}
{{- define "jobtrigger.hashKeySecret" -}}
{{- default (printf "%s-hash-key" (include "jobtrigger.fullname" .)) .Values.hashKey.existingSecret -}}
{{- end -}}
