"""Active-active shards: replicas share the JobTriggers, each owned by exactly one live replica (docs/concepts.md)."""
