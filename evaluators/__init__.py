"""specsel evaluators: metrics, regret, trace replay, tables and plots (records in, never models)."""
