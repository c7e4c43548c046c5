"""``python -m jobtrigger.envtest up``."""

from jobtrigger.envtest.cli import main

raise SystemExit(main())
