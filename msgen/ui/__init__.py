"""Web UI: one module per tab (layout ``build(ctx)`` plus pure, testable handlers) and ``common``."""
