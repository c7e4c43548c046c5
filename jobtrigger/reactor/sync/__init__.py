"""The sync path, one concern per module; :class:`jobtrigger.reactor.sync.core.Sync` is the script that runs them."""
