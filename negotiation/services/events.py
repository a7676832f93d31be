"""A run's live events: published to Redis pub/sub after each commit, streamed as server-sent events.

Publishing: `play` calls `publish_on_commit` when it inserts a message, writes an outcome, or ends a
run otherwise (failed, cancelled, an abandoned room expired). The
notice carries only the run id and what happened; readers load the rows from Postgres and filter
them for their audience, so a notice can never carry more than its reader may see, and a lost
notice costs at most one poll interval (the stream re-reads Postgres every `poll` seconds too).

Event ids are resume cursors, `"<round>.<hex mask>"`: the latest round delivered and the set of
that round's events already delivered (bit 0 the buyer's message, bit i the i-th seller's reply,
bit 11 the outcome). Rounds are a commit barrier (round r+1 starts only after every reply of round
r is committed), but the replies inside a round commit in any order, so a cursor, unlike a
timestamp, lets a client that reconnects with `Last-Event-ID` get every event exactly once: all
events of later rounds, and the events of its last round that it has not seen. Each event's own
stable identity is the `id` in its data (the message or outcome id).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from negotiation.engine import visibility
from negotiation.engine.types import BUYER
from negotiation.models import Message, MessageAudio, NegotiationRun, Outcome
from negotiation.run_context import run_context
from negotiation.services import outside

log = logging.getLogger(__name__)
OUTCOME_SLOT = 11

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    return _client


def channel(run_id: Any) -> str:
    return f"mams:run:{run_id}"


def publish(run_id: Any, kind: str, **data: Any) -> None:
    """Tell live readers of a run that something was committed; never fails the caller."""
    try:
        redis_client().publish(channel(run_id), json.dumps({"kind": kind, **data}, default=str))
    except redis.RedisError as exc:
        log.warning("run %s: could not publish %s to Redis (%s); streams will catch up by polling", run_id, kind,
                    exc)


def publish_on_commit(run_id: Any, kind: str, **data: Any) -> None:
    transaction.on_commit(lambda: publish(run_id, kind, **data))


@dataclass(frozen=True)
class Cursor:
    round_no: int = 0
    seen: frozenset[int] = field(default_factory=frozenset)

    def encode(self) -> str:
        return f"{self.round_no}.{sum(1 << s for s in self.seen):x}"

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        """A cursor from a Last-Event-ID; anything unreadable means "from the start"."""
        try:
            round_part, mask_part = (raw or "").strip().split(".", 1)
            round_no, mask = int(round_part), int(mask_part, 16)
        except ValueError:
            return cls()
        if not 0 <= round_no < 10_000 or not 0 <= mask < (1 << (OUTCOME_SLOT + 1)):
            return cls()
        return cls(round_no=round_no, seen=frozenset(i for i in range(OUTCOME_SLOT + 1) if mask >> i & 1))

    def admits(self, round_no: int, slot: int) -> bool:
        return round_no > self.round_no or (round_no == self.round_no and slot not in self.seen)

    def advance(self, round_no: int, slot: int) -> Cursor:
        if round_no > self.round_no:
            return Cursor(round_no=round_no, seen=frozenset({slot}))
        return Cursor(round_no=self.round_no, seen=self.seen | {slot})


@dataclass(frozen=True)
class StreamEvent:
    kind: str  # "message", "offer", "outcome"
    data: dict[str, Any]
    cursor: Cursor


# render(kind, row, audience) -> the event's data, as the API shows that row to this reader
Renderer = Callable[[str, Any, tuple[str, ...]], dict[str, Any]]


def pending_events(*, run: NegotiationRun, cursor: Cursor, render: Renderer) -> tuple[list[StreamEvent], Cursor]:
    """Events of `run` the cursor has not delivered, in order, and the cursor after them.

    A human buyer's stream holds only the buyer's view of the transcript.

    The outcome is read before the transcript. The turn that ends a run commits its last message and
    the outcome together, so a transcript read after the outcome holds every message of the run,
    and the outcome's cursor slot (its last round) is final. Read the other way round, a commit
    landing between the two reads gave an outcome with a stale last round, and the next read sent
    it again under the new round (a resume then lacked the duplicate: a flaky e2e test under load).
    """
    outcome = Outcome.objects.filter(run=run).first()
    ctx = run_context(run, rows=True)
    msgs = ctx.transcript
    if run.mode in NegotiationRun.OUTSIDE_BUYER:
        msgs = visibility.buyer_view(me=ctx.buyer, handles=ctx.handles, round_no=run.current_round,
                                     max_rounds=run.max_rounds, transcript=ctx.received(BUYER)).thread
    slots = {h: i + 1 for i, h in enumerate(ctx.handles)}
    out: list[StreamEvent] = []
    for m in msgs:
        slot = 0 if m.sender == BUYER else slots.get(m.sender, OUTCOME_SLOT - 1)
        row: Message | None = ctx.row(m.round_no, m.sender)
        if row is None or not cursor.admits(m.round_no, slot):
            continue
        if run.mode in NegotiationRun.OUTSIDE_BUYER:
            row = ctx.row_received(row, BUYER)
        cursor = cursor.advance(m.round_no, slot)
        kind = "offer" if m.sender != BUYER and m.price is not None else "message"
        out.append(StreamEvent(kind=kind, data=render(kind, row, visibility.audience(m)), cursor=cursor))
    if outcome is not None:
        last_round = max((m.round_no for m in ctx.transcript), default=run.current_round)
        if cursor.admits(last_round, OUTCOME_SLOT):
            cursor = cursor.advance(last_round, OUTCOME_SLOT)
            out.append(StreamEvent(kind="outcome", data=render("outcome", outcome, ()), cursor=cursor))
    return out, cursor


def audio_events(*, run: NegotiationRun, announced: set[str]) -> list[dict[str, Any]]:
    """`audio` events for seller replies whose speech is ready and not yet announced on this connection.

    No event id (like `debrief`): a reconnecting client gets each ready audio again, and the replayed
    messages carry their `audio_url` anyway. Every seller reply goes to the buyer alone, so each one is
    in the buyer's view and the owner's; the audio speaks the words the buyer received.
    """
    if not run.voice:
        return []
    rows = (MessageAudio.objects.filter(message__run=run, status=MessageAudio.Status.READY)
            .exclude(message_id__in=list(announced)).values_list("message_id", "message__round_no", "message__sender")
            .order_by("message__round_no", "message__created_at"))
    out = []
    for message_id, round_no, sender in rows:
        announced.add(str(message_id))
        out.append({"message_id": str(message_id), "round": round_no, "sender": sender,
                    "audio_url": audio_url(run_id=run.pk, message_id=message_id)})
    return out


def sse(*, data: dict[str, Any], event: str | None = None, event_id: str | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, default=str, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def run_stream(*, run_id: Any, cursor: Cursor, render: Renderer, heartbeat: float, max_seconds: float,
               poll: float) -> Iterator[str]:
    """Server-sent events of a run: what the cursor has not seen, then live events until the run ends.

    An outside buyer's stream then carries a `debrief` event (no id: it is sent on every reconnection
    after the end, like `end`), rendered by `render("debrief", run, ())`.

    Subscribes before reading Postgres, so nothing committed in between is missed; re-reads on every
    notice and at least every `poll` seconds; sends a comment line every `heartbeat` seconds; ends
    with an `end` event once the run is over, or after `max_seconds` (the client resumes).
    """
    pubsub = None
    try:
        pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel(run_id))
    except redis.RedisError as exc:
        log.warning("run %s: no Redis pub/sub (%s); the stream polls Postgres", run_id, exc)
        pubsub = None
    started = last_beat = time.monotonic()
    announced: set[str] = set()
    try:
        yield f"retry: {int(max(1.0, min(poll, 5.0)) * 1000)}\n\n"
        while True:
            run = NegotiationRun.objects.filter(pk=run_id).first()
            if run is None:
                yield sse(event="end", data={"status": "deleted"})
                return
            events, cursor = pending_events(run=run, cursor=cursor, render=render)
            for ev in events:
                yield sse(event=ev.kind, data=ev.data, event_id=ev.cursor.encode())
            for data in audio_events(run=run, announced=announced):
                yield sse(event="audio", data=data)
            if run.status in NegotiationRun.TERMINAL:
                if outside.is_outside(run):  # the run has ended: its buyer gets the debrief (services/outside.py)
                    yield sse(event="debrief", data=render("debrief", run, ()))
                yield sse(event="end", data={"status": run.status, "error": run.error or None})
                return
            now = time.monotonic()
            if now - started >= max_seconds:
                return
            deadline = min(now + poll, last_beat + heartbeat, started + max_seconds)
            notified = False
            while not notified and time.monotonic() < deadline:
                wait = max(0.0, deadline - time.monotonic())
                if pubsub is not None:
                    try:
                        notified = pubsub.get_message(timeout=wait) is not None
                    except redis.RedisError:
                        pubsub = None
                else:
                    time.sleep(min(wait, 1.0))
            if time.monotonic() - last_beat >= heartbeat:
                last_beat = time.monotonic()
                yield ": keep-alive\n\n"
    finally:
        if pubsub is not None:
            try:
                pubsub.close()
            except redis.RedisError:
                pass


def audio_url(*, run_id: Any, message_id: Any) -> str:
    """The API path of a seller reply's audio (stream events, API bodies and pages carry it)."""
    return f"/api/negotiations/{run_id}/messages/{message_id}/audio"
