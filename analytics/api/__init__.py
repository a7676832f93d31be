"""REST APIs of analytics: paired experiments and reflect sequences (their results), the environment
API for external agents (its tasks come from benchmark suites, its reward is a metric), and the
audit archive's downloads."""
