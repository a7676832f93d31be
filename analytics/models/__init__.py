"""Analytics models: per-run metrics and analysis (runs.py), and benchmark suites, schedules, runs and
drift flags (benchmarks.py). Django loads an app's models from here."""

from analytics.models.benchmarks import (
    BenchmarkBatch,
    BenchmarkRun,
    BenchmarkSchedule,
    DriftFlag,
    Suite,
    SuiteScenario,
)
from analytics.models.runs import RunAnalysis, RunMetrics

__all__ = ["BenchmarkBatch", "BenchmarkRun", "BenchmarkSchedule", "DriftFlag", "RunAnalysis", "RunMetrics", "Suite",
           "SuiteScenario"]
