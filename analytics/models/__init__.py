"""Analytics models: per-run metrics, analysis and archive records (runs.py), and benchmark suites, schedules, runs and
drift flags (benchmarks.py). Django loads an app's models from here."""

from analytics.models.benchmarks import (
    BenchmarkBatch,
    BenchmarkRun,
    BenchmarkSchedule,
    DriftFlag,
    Suite,
    SuiteScenario,
)
from analytics.models.runs import RunAnalysis, RunArchive, RunMetrics

__all__ = ["BenchmarkBatch", "BenchmarkRun", "BenchmarkSchedule", "DriftFlag", "RunAnalysis", "RunArchive",
           "RunMetrics", "Suite", "SuiteScenario"]
