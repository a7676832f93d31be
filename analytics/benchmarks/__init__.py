"""Benchmarks: suites loaded into the database, benchmark runs and schedules, the leaderboard, drift."""
