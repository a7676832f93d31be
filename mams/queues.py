"""The one list of Celery queue names, so producers, workers and deploy files agree."""

from enum import StrEnum


class Queue(StrEnum):
    ROUNDS = "rounds"  # one task per negotiation round (the buyer's turn and the fan-out)
    AGENTS = "agents"  # one task per seller turn
    ANALYSIS = "analysis"  # post-run analysis; never blocks negotiation
    MAINTENANCE = "maintenance"  # sweepers and scheduled benchmarks
    VOICE = "voice"  # seller speech (negotiation/services/voice.py); a slow TTS never delays a turn
    ARCHIVE = "archive"  # the audit archive of ended runs (analytics/archive.py); a slow store delays nothing


ALL_QUEUES = ",".join(q.value for q in Queue)
