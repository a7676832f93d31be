"""Seller voices: each seller reply of a run with voice on is spoken, in that seller's own voice.

The reply is queued for the `voice` queue after its message commits (`voice_on_commit`, called by
`play._insert_message`), so a slow TTS never delays a negotiation turn. The words spoken are the ones the
buyer received (the run's disclosure rule applied): audio can be played to an outside buyer, so it must
never say a number the text withheld. The result, or why there is none, is one MessageAudio row per
message; the API then carries an `audio_url`, and the run's stream an `audio` event.

Engine: ElevenLabs through its official SDK when ELEVENLABS_API_KEY is set (model MAMS_ELEVENLABS_MODEL),
else espeak-ng (negotiation/tts.py says why). The key is read from the environment only when speaking;
it is never stored, logged or returned.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from mams.celery import app
from mams.queues import Queue
from negotiation import tts
from negotiation.engine.types import BUYER
from negotiation.models import Message, MessageAudio, NegotiationRun, Seller
from negotiation.run_context import run_context
from negotiation.services import outside
from negotiation.services.events import publish

log = logging.getLogger(__name__)


def voice_on_commit(*, run: NegotiationRun, msg: Message) -> None:
    """The hook in play: queue the speech of a seller reply once it is committed (voice runs only)."""
    if not run.voice or msg.sender == BUYER:
        return
    transaction.on_commit(lambda: voice_enqueue(msg.pk))


def voice_enqueue(message_id: Any) -> None:

    try:
        app.send_task("negotiation.speak", args=[str(message_id)], queue=Queue.VOICE)
    except Exception:  # no broker: the reply stays silent, the negotiation goes on
        log.exception("message %s: could not queue its speech", message_id)


def engine_name() -> str:
    return "elevenlabs" if os.environ.get("ELEVENLABS_API_KEY") else "espeak-ng"


def seller_voice(*, run: NegotiationRun, handle: str) -> tuple[int, str, str]:
    """(position among the run's sellers, style, admin override) of a seller, from the run's snapshot."""

    sellers = run.scenario.get("sellers", [])
    position = next((i for i, s in enumerate(sellers) if s["handle"] == handle), 0)
    style = next((s.get("style", "neutral") for s in sellers if s["handle"] == handle), "neutral")
    seller_id = next((s["id"] for s in sellers if s["handle"] == handle), None)
    override = Seller.objects.filter(pk=seller_id).values_list("voice", flat=True).first() or "" if seller_id else ""
    return position, style, override


def spoken_text(*, run: NegotiationRun, msg: Message) -> str:
    """The reply as the buyer received it (the disclosure rule applied)."""

    return run_context(run).row_received(msg, BUYER).text


def message_speak(*, message_id: Any) -> MessageAudio | None:
    """Speak one seller reply and store it; None if the message is gone or already spoken.

    Raises tts.TTSError with `transient` set for the task to retry; any other outcome is a stored row.
    """
    msg = Message.objects.select_related("run").filter(pk=message_id).first()
    if msg is None or msg.sender == BUYER or MessageAudio.objects.filter(message=msg).exists():
        return None
    run = msg.run
    text, note = tts.cut(spoken_text(run=run, msg=msg), settings.MAMS_VOICE_MAX_CHARS)
    position, style, override = seller_voice(run=run, handle=msg.sender)
    if outside.is_outside(run):
        # A seller's style is hidden from an outside buyer (services/outside.py): its voice is not derived from it.
        style = "neutral"
    key = os.environ.get("ELEVENLABS_API_KEY", "")
    if not text:
        return _store(msg, status=MessageAudio.Status.FAILED, engine=engine_name(), note="",
                      error="The reply has no words to speak.")
    if key:
        speech = tts.eleven_speak(text, api_key=key, voice_id=tts.eleven_voice(position=position, override=override),
                                  model=settings.MAMS_ELEVENLABS_MODEL, base_url=settings.MAMS_ELEVENLABS_URL or None,
                                  timeout=settings.MAMS_VOICE_TIMEOUT_SECONDS)
    else:
        voice, pitch, speed = tts.local_voice(position=position, style=style, override=override)
        speech = tts.espeak_speak(text, voice=voice, pitch=pitch, speed=speed,
                                  timeout=settings.MAMS_VOICE_TIMEOUT_SECONDS)
    if speech.language:
        note = "; ".join(n for n in (note, f"spoken in {speech.language}") if n)
    return _store(msg, status=MessageAudio.Status.READY, engine=speech.engine, voice=speech.voice,
                  content_type=speech.content_type, data=speech.audio, duration_ms=speech.duration_ms,
                  chars=len(text), note=note)


def message_speak_fail(*, message_id: Any, error: str) -> None:
    msg = Message.objects.select_related("run").filter(pk=message_id).first()
    if msg is not None and not MessageAudio.objects.filter(message=msg).exists():
        _store(msg, status=MessageAudio.Status.FAILED, engine=engine_name(), error=error[:1000])


def _store(msg: Message, **fields: Any) -> MessageAudio | None:
    try:
        with transaction.atomic():
            row = MessageAudio.objects.create(message=msg, **fields)
    except IntegrityError:  # a redelivery raced us: the first row stands
        return None
    if row.status == MessageAudio.Status.READY:
        publish(msg.run_id, "audio", message_id=str(msg.pk))
    return row


def run_audio_pending(*, run: NegotiationRun) -> bool:
    """Whether some seller reply of a voice run has no audio row yet (the archive waits for it)."""
    if not run.voice:
        return False
    return Message.objects.filter(run=run, sender_type=Message.SenderType.SELLER, audio__isnull=True).exists()
