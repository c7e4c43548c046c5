"""Prometheus metrics (served on the controller's HTTP server; see docs/operations.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

JOBS_CREATED = Counter(
    "jobtrigger_jobs_created_total", "Jobs created, by trigger type and result", ["trigger", "result"]
)
JOBS_DELETED = Counter("jobtrigger_jobs_deleted_total", "Jobs deleted by history limits")
SYNCS = Counter("jobtrigger_syncs_total", "JobTrigger evaluations, by result", ["result"])
SYNC_SECONDS = Histogram(
    "jobtrigger_sync_duration_seconds",
    "Time to evaluate one JobTrigger",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENT_TO_JOB = Histogram(
    "jobtrigger_event_to_job_seconds",
    "From the arrival of the watch event to the Job created",
    ["trigger"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SKIPPED = Counter("jobtrigger_runs_skipped_total", "Runs deferred or skipped, by reason", ["reason"])
INVALID = Counter("jobtrigger_invalid_total", "JobTriggers found invalid, by reason", ["reason"])
QUEUE_DEPTH = Gauge("jobtrigger_queue_depth", "JobTrigger keys waiting in the work queue")
WATCH_RESTARTS = Counter("jobtrigger_watch_restarts_total", "Watch streams restarted, by cause", ["cause"])
API_REQUESTS = Counter("jobtrigger_api_requests_total", "Requests to the Kubernetes API", ["verb", "resource", "code"])
ACTIVE_JOBS = Gauge("jobtrigger_active_jobs", "Active Jobs created by jobtrigger (all JobTriggers)")
LEADER = Gauge("jobtrigger_leader", "1 while this process holds the leader Lease")
SHARD_MEMBERS = Gauge("jobtrigger_shard_members", "Replicas in the shard view this replica published (--shards)")
SHARD_OWNED = Gauge("jobtrigger_shard_owned_jobtriggers", "JobTriggers this replica works on (--shards)")
WATCHES = Gauge("jobtrigger_watches", "Watch streams this process keeps open (JobTriggers, Jobs, watched kinds, pods)")
SHARD_HANDOVERS = Counter(
    "jobtrigger_shard_handovers_total",
    "JobTriggers this replica took over (gained) or gave up after it stopped working on them (released)",
    ["direction"],
)
JOBTRIGGERS = Gauge("jobtrigger_jobtriggers", "JobTriggers by the reason of their Ready condition", ["reason"])
STATUS_BEHIND = Gauge(
    "jobtrigger_status_behind_jobtriggers",
    "JobTriggers whose status write is deferred (--status-qps spent): their runs are recorded on their Jobs so far",
)
STATUS_FLUSHES = Counter(
    "jobtrigger_status_flushes_total", "Deferred status writes handed to a sync by the write-behind flusher"
)
STATUS_DEFERRED = Counter(
    "jobtrigger_status_deferred_total", "Status writes deferred and merged into a later write of the same JobTrigger"
)
