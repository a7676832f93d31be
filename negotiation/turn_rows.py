"""The rows a turn reads and writes, as fixed SQL built once from the models.

A turn's own work is small, so the ORM's per-query cost dominated it: on these machines compiling
a queryset took 0.6-0.7 ms on top of a 0.25 ms round trip, and a turn made five or six queries (see
perf/overhead.py). The statements here are built from the models' metadata the first time they are
used and then only executed: columns, converters (JSON) and defaults (ids, timestamps) still come
from the fields, so a model change reaches them, and the rows come back as model instances.

A seller's turn is now three statements (its run with the transcript, its message, the transcript
again to see whether the round is complete) and the round's last seller adds the round move; a
buyer's turn is two. Only these hot statements live here; everything else stays on the ORM.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model
from django.utils import timezone

from negotiation.engine.types import Msg
from negotiation.models import Batch, Message, NegotiationRun


class _Reader:
    """Loads model instances from raw rows with the fields' own converters (e.g. JSON decoding)."""

    def __init__(self, model: type[Model], alias: str) -> None:
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.attnames = [f.attname for f in self.fields]
        self.columns = ", ".join(f"{alias}.{connection.ops.quote_name(str(f.column))}" for f in self.fields)
        self.converters: list[tuple[int, list[Callable[..., Any]], Any]] = []
        for i, f in enumerate(self.fields):
            convs = connection.ops.get_db_converters(f.cached_col) + f.get_db_converters(connection)
            if convs:
                self.converters.append((i, convs, f.cached_col))

    def load(self, values: Sequence[Any]) -> Model:
        row = list(values[:len(self.fields)])
        for i, convs, col in self.converters:
            for conv in convs:
                row[i] = conv(row[i], col, connection)
        return self.model.from_db(connection.alias, self.attnames, row)


@cache
def _run_reader() -> tuple[_Reader, str]:
    reader = _Reader(NegotiationRun, "r")
    q = connection.ops.quote_name
    # The transcript rides along as one JSON array (prices as text, so no float rounding): a turn
    # reads its run and its transcript in one round trip.
    said = (f"SELECT COALESCE(json_agg(json_build_array(m.{q('round_no')}, m.{q('sender')}, m.{q('recipients')}, "
            f"m.{q('text')}, m.{q('action')}, m.{q('price')}::text) ORDER BY m.{q('round_no')}, "
            f"m.{q('sender_type')}, m.{q('created_at')}), '[]')::text "
            f"FROM {q(Message._meta.db_table)} m WHERE m.{q('run_id')} = r.{q('id')}")
    sql = (f"SELECT {reader.columns}, b.{q('budget_usd')}::text, b.{q('budget_tokens')}, b.{q('stop_reason')}, "
           f"b.{q('status')}, ({said}) FROM {q(NegotiationRun._meta.db_table)} r "
           f"LEFT JOIN {q(Batch._meta.db_table)} b ON b.{q('id')} = r.{q('batch_id')} WHERE r.{q('id')} = %s")
    return reader, sql


@dataclass(frozen=True)
class TurnRun:
    run: NegotiationRun
    batch_status: str | None  # None for a run without a batch
    transcript: tuple[Msg, ...]  # as `transcript(run_id)` would read it
    budget_usd: Decimal | None = None  # the batch's budgets (services/budgets.py), None when unset
    budget_tokens: int | None = None
    stop_reason: str = ""  # why the platform stopped the batch ("budget reached"), blank otherwise


def run_for_turn(run_id: Any) -> TurnRun | None:
    """The run, its batch's status and budgets and its transcript, in one query; None if there is no such run."""
    reader, sql = _run_reader()
    with connection.cursor() as cur:
        cur.execute(sql, [run_id])
        row = cur.fetchone()
    if row is None:
        return None
    said = tuple(Msg(round_no=m[0], sender=m[1], recipients=tuple(m[2]), text=m[3], action=m[4],
                     price=None if m[5] is None else Decimal(m[5])) for m in json.loads(row[-1]))
    return TurnRun(run=reader.load(row), batch_status=row[-2], transcript=said,  # type: ignore[arg-type]
                   budget_usd=None if row[-5] is None else Decimal(row[-5]), budget_tokens=row[-4],
                   stop_reason=row[-3] or "")


@cache
def _transcript_sql() -> str:
    q = connection.ops.quote_name
    return (f"SELECT {q('round_no')}, {q('sender')}, {q('recipients')}, {q('text')}, {q('action')}, {q('price')} "
            f"FROM {q(Message._meta.db_table)} WHERE {q('run_id')} = %s "
            f"ORDER BY {q('round_no')}, {q('sender_type')}, {q('created_at')}")


def transcript(run_id: Any) -> tuple[Msg, ...]:
    """The run's messages as the engine sees them, in the transcript's order (the same as run_context's)."""
    with connection.cursor() as cur:
        cur.execute(_transcript_sql(), [run_id])
        rows = cur.fetchall()
    return tuple(Msg(round_no=r[0], sender=r[1], recipients=tuple(r[2]), text=r[3], action=r[4], price=r[5])
                 for r in rows)


@cache
def _move_sql() -> str:
    q = connection.ops.quote_name
    return (f"UPDATE {q(NegotiationRun._meta.db_table)} SET {q('current_round')} = %s, {q('heartbeat_at')} = %s "
            f"WHERE {q('id')} = %s AND {q('status')} = %s AND {q('current_round')} = %s")


def round_move(run_id: Any, round_no: int) -> bool:
    """Move a running run from `round_no` to the next round (conditional: one caller wins); True if moved."""
    with connection.cursor() as cur:
        cur.execute(_move_sql(), [round_no + 1, timezone.now(), run_id, NegotiationRun.Status.RUNNING, round_no])
        return cur.rowcount == 1


@cache
def _insert_sql() -> tuple[list[Any], str]:
    fields = list(Message._meta.concrete_fields)
    q = connection.ops.quote_name
    sql = (f"INSERT INTO {q(Message._meta.db_table)} ({', '.join(q(str(f.column)) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))}) "
           f"ON CONFLICT ({q('run_id')}, {q('round_no')}, {q('sender')}) DO NOTHING RETURNING {q('id')}")
    return fields, sql


def message_insert(msg: Message) -> bool:
    """INSERT the message unless its (run, round, sender) is already taken; True if this call wrote it.

    A duplicate is not an error, so inside a transaction nothing is aborted and no savepoint is needed.
    Defaults (id, created_at, empty JSON) are filled by the fields, as `save()` would.
    """
    fields, sql = _insert_sql()
    params = [f.get_db_prep_save(f.pre_save(msg, True), connection) for f in fields]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        inserted = cur.fetchone() is not None
    if inserted:
        msg._state.adding = False
        msg._state.db = connection.alias
    return inserted
