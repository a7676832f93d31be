"""Enqueueing by task name, so services never import the task modules that call them."""

from __future__ import annotations

from uuid import UUID

from mams.celery import app
from mams.queues import Queue


def enqueue_round(run_id: UUID | str, round_no: int) -> None:
    app.send_task("negotiation.round", args=[str(run_id), round_no], queue=Queue.ROUNDS)


def enqueue_seller_turn(run_id: UUID | str, round_no: int, seller_id: str) -> None:
    app.send_task("negotiation.seller_turn", args=[str(run_id), round_no, seller_id], queue=Queue.AGENTS)


def enqueue_batch_start(batch_id: UUID | str) -> None:
    app.send_task("negotiation.batch_start", args=[str(batch_id)], queue=Queue.ROUNDS)


def enqueue_reflect(run_id: UUID | str) -> None:
    app.send_task("negotiation.reflect", args=[str(run_id)], queue=Queue.ANALYSIS)
