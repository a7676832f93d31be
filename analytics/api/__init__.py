"""REST APIs that read analytics: paired experiments and reflect sequences (their results), and the
environment API for external agents (its tasks come from benchmark suites, its reward is a metric)."""
