"""Seller voices end to end (negotiation/services/voice.py): the real worker speaks each seller reply on the
voice queue, the API carries `audio_url`, the audio endpoint serves it, the stream announces it, and the
archive holds it. ElevenLabs is the official SDK against a fake server on loopback."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import wave
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from analytics.models import RunArchive
from negotiation.models import Message, MessageAudio, NegotiationRun
from negotiation.services import voice
from negotiation.services.batches import batch_create
from negotiation.services.live import live_start
from tests.api.conftest import BASELINE, LLM, client_for
from tests.conftest import queues_taken_from, start_worker, stop_worker, wait_for, wait_for_batch
from tests.factories import UserFactory
from tests.fakes.elevenlabs_server import FakeElevenLabs

KEY = "sk_test_eleven_fedcba9876543210"
LINEAR = {"seller": {"strategy": "linear"}, "analyst": {"strategy": "linear"}}


def _session(owner: Any) -> Any:
    from negotiation.services.scenarios import scenario_document
    from negotiation.services.sessions import session_import

    return session_import(document=scenario_document("spec_sample"), owner=owner)


def _all_spoken(batch_id: Any) -> bool:
    sellers = Message.objects.filter(run__batch_id=batch_id, sender_type="seller")
    return sellers.exists() and not sellers.filter(audio__isnull=True).exists()


def _wav_seconds(audio: bytes) -> float:
    with wave.open(io.BytesIO(audio)) as w:
        return w.getnframes() / w.getframerate()


# --- the switch: live rooms on, batches opt-in -----------------------------------------------------


@pytest.mark.django_db
def test_voice_is_on_for_live_rooms_and_opt_in_for_batches() -> None:
    user = UserFactory(username="v-owner")
    api = client_for(user)
    session = _session(user)
    room = api.post("/api/negotiations/start", {"session_id": str(session.pk), "item_name": "USB-C Cable",
                                                "agents": LINEAR}, format="json")
    assert room.status_code == 201 and NegotiationRun.objects.get(pk=room.json()["negotiation_id"]).voice
    quiet = api.post("/api/negotiations/start", {"session_id": str(session.pk), "item_name": "USB-C Cable",
                                                 "agents": LINEAR, "voice": False}, format="json")
    assert quiet.status_code == 201 and not NegotiationRun.objects.get(pk=quiet.json()["negotiation_id"]).voice
    # an external agent's room (/env) does not listen
    env_room = live_start(owner=user, session=session, item_name="USB-C Cable", mode=NegotiationRun.Mode.EXTERNAL,
                          buyer={"strategy": "external"}, seller_agent=LINEAR["seller"],
                          analyst_agent=LINEAR["analyst"])
    assert env_room.voice is False
    body = {"session": str(session.pk), "item_name": "USB-C Cable", "runs": 1, "agents": BASELINE}
    plain = api.post("/api/batches", body, format="json")
    assert plain.status_code == 201 and plain.json()["voice"] is False
    spoken = api.post("/api/batches", {**body, "voice": True}, format="json")
    assert spoken.status_code == 201 and spoken.json()["voice"] is True
    assert NegotiationRun.objects.filter(batch_id=spoken.json()["id"], voice=True).count() == 1
    bad = api.post("/api/batches", {**body, "voice": "loudly"}, format="json")
    assert bad.status_code == 400 and list(bad.json()["errors"]) == ["voice"]


# --- the local engine through the real worker -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_voice_batch_speaks_every_seller_reply(celery_worker: Any, llm: Any) -> None:
    # given a batch with voice on, played by the real worker (no ElevenLabs key: espeak-ng)
    user = UserFactory(username="listener")
    api, intruder = client_for(user), client_for(UserFactory(username="stranger"))
    batch = batch_create(session=_session(user), item_name="USB-C Cable", runs=1, agents=LLM, max_rounds=2,
                         owner=user, voice=True)
    wait_for_batch(batch.pk, timeout=90, worker=celery_worker)
    wait_for(lambda: _all_spoken(batch.pk), timeout=60, what="every seller reply spoken")
    run = NegotiationRun.objects.get(batch=batch)
    # then each seller message has an audio_url (spec 10.2), the buyer's none
    lines = api.get(f"/api/negotiations/{run.pk}/messages").json()["messages"]
    sellers = [m for m in lines if m["sender_type"] == "seller"]
    assert sellers and all(m["audio_url"] for m in sellers)
    assert all(m["audio_url"] is None for m in lines if m["sender_type"] == "buyer")
    # and each URL serves a WAV that decodes, as long as its words need, in its seller's voice
    voices = {}
    for m in sellers:
        r = api.get(m["audio_url"], HTTP_ACCEPT="audio/*")
        assert r.status_code == 200 and r["Content-Type"] == "audio/wav"
        seconds = _wav_seconds(r.content)
        words = len(m["text"].split())
        assert 0.15 * words < seconds < 0.8 * words + 1.5, (words, seconds)
        voices.setdefault(m["sender"], set()).add(MessageAudio.objects.get(message_id=m["id"]).voice)
        assert intruder.get(m["audio_url"]).status_code == 404
    assert len({v for vs in voices.values() for v in vs}) == len(voices)  # one voice per seller, all different
    # and the stream announces each ready audio
    stream = b"".join(api.get(f"/api/negotiations/{run.pk}/stream").streaming_content).decode()
    announced = [json.loads(block.split("data: ", 1)[1]) for block in stream.split("\n\n")
                 if block.startswith("event: audio")]
    assert sorted(a["message_id"] for a in announced) == sorted(m["id"] for m in sellers)
    assert all(a["audio_url"] == next(m["audio_url"] for m in sellers if m["id"] == a["message_id"])
               for a in announced)
    # and the archive waited for the audio and holds it
    wait_for(lambda: RunArchive.objects.filter(run=run, status="archived").exists(), timeout=60, what="archive")
    from analytics.archive import object_get

    doc = json.loads(gzip.decompress(object_get(RunArchive.objects.get(run=run).url)))
    archived = {m["id"]: m.get("audio") for m in doc["messages"] if m["sender"] != "buyer"}
    for m in sellers:
        stored = bytes(MessageAudio.objects.get(message_id=m["id"]).data)
        assert archived[m["id"]]["sha256"] == hashlib.sha256(stored).hexdigest()


@pytest.mark.django_db
def test_the_audio_speaks_what_the_buyer_received_never_a_withheld_number(play_through: Any, llm: Any) -> None:
    # given a voice run whose sellers state their own floor, under the default redact rule
    from tests.fakes.policies import negotiation

    def leaky(req: Any) -> str:
        out = negotiation(req)
        if "Your absolute bottom line: $" in req.text and '"offer"' in out:
            floor = req.text.split("Your absolute bottom line: $")[1].split()[0]
            out = out.replace('"message": "', f'"message": "My floor is ${floor}, but ', 1)
        return out

    llm.policy = leaky
    user = UserFactory(username="redact-listener")
    batch = batch_create(session=_session(user), item_name="USB-C Cable", runs=1, agents=LLM, max_rounds=2,
                         owner=user, voice=True)
    run = play_through(NegotiationRun.objects.get(batch=batch).pk)
    leaking = [m for m in Message.objects.filter(run=run, sender_type="seller") if "My floor is $" in m.text]
    assert leaking
    for msg in leaking:
        # when its reply is spoken
        row = voice.message_speak(message_id=msg.pk)
        floor = msg.text.split("My floor is $")[1].split(",")[0]
        spoken = voice.spoken_text(run=run, msg=msg)
        # then the words spoken are the delivered ones: the floor withheld
        assert floor not in spoken and row.chars == len(" ".join(spoken.split()))
        assert row.status == "ready" and _wav_seconds(bytes(row.data)) > 0.5


@pytest.mark.django_db
def test_an_empty_or_very_long_reply_never_crashes(play_through: Any, llm: Any, settings: Any) -> None:
    user = UserFactory(username="edge-listener")
    batch = batch_create(session=_session(user), item_name="USB-C Cable", runs=1, agents=BASELINE, max_rounds=1,
                         owner=user, voice=True)
    run = play_through(NegotiationRun.objects.get(batch=batch).pk)
    first, second = list(Message.objects.filter(run=run, sender_type="seller"))[:2]
    Message.objects.filter(pk=first.pk).update(text="   ")
    Message.objects.filter(pk=second.pk).update(text="Привет, это очень длинное предложение. " * 100)
    settings.MAMS_VOICE_MAX_CHARS = 300
    empty = voice.message_speak(message_id=first.pk)
    assert empty.status == "failed" and "no words" in empty.error
    long = voice.message_speak(message_id=second.pk)
    assert long.status == "ready" and long.chars <= 300
    assert long.note.startswith("spoken: the first") and "spoken in ru" in long.note
    assert voice.message_speak(message_id=second.pk) is None  # a redelivery writes nothing


# --- ElevenLabs through the real worker, at the wire --------------------------------------------------


@pytest.fixture
def eleven() -> Iterator[FakeElevenLabs]:
    fake = FakeElevenLabs(api_key=KEY)
    fake.start()
    yield fake
    fake.stop()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_with_a_key_elevenlabs_speaks_and_the_key_never_leaves_the_environment(
        eleven: FakeElevenLabs, celery_worker: Any, llm: Any, settings: Any) -> None:
    # given a worker with an ElevenLabs key, its endpoint the fake on loopback (one 429 first, retried); the
    # shared worker (no key) leaves the voice queue to it
    eleven.faults = [429]
    with queues_taken_from(celery_worker, "voice"):
        _eleven_batch(eleven, llm, settings)


def _eleven_batch(eleven: FakeElevenLabs, llm: Any, settings: Any) -> None:
    worker = start_worker(db_name=settings.DATABASES["default"]["NAME"], llm_url=llm.base_url, name="eleven",
                          extra_env={"ELEVENLABS_API_KEY": KEY, "MAMS_ELEVENLABS_URL": eleven.base_url})
    try:
        user = UserFactory(username="eleven-listener")
        api = client_for(user)
        batch = batch_create(session=_session(user), item_name="USB-C Cable", runs=1, agents=LLM, max_rounds=2,
                             owner=user, voice=True)
        wait_for_batch(batch.pk, timeout=90, worker=worker)
        wait_for(lambda: _all_spoken(batch.pk), timeout=90, what="every seller reply spoken")
        run = NegotiationRun.objects.get(batch=batch)
        wait_for(lambda: RunArchive.objects.filter(run=run, status="archived").exists(), timeout=60, what="archive")
    finally:
        stop_worker(worker)
    # then each reply went to POST /v1/text-to-speech/{voice} with the key in xi-api-key and the text in the body
    sellers = list(Message.objects.filter(run=run, sender_type="seller"))
    assert len(eleven.requests) == len(sellers) + 1  # and the 429 was retried
    by_text = {r["body"]["text"]: r for r in eleven.requests}
    voice_of = {}
    for msg in sellers:
        req = by_text[" ".join(voice.spoken_text(run=run, msg=msg).split())]
        assert req["headers"]["xi-api-key"] == KEY and req["body"]["model_id"] == "eleven_multilingual_v2"
        assert req["path"].startswith("/v1/text-to-speech/")
        voice_of.setdefault(msg.sender, set()).add(req["path"].rsplit("/", 1)[1])
        audio = MessageAudio.objects.get(message=msg)
        assert audio.engine == "elevenlabs" and audio.content_type == "audio/mpeg" and audio.status == "ready"
    assert all(len(v) == 1 for v in voice_of.values()) and len({next(iter(v)) for v in voice_of.values()}) == len(
        voice_of)
    # and the key is in no row of any table, no response, no archive and no log line
    with connection.cursor() as cur:
        for table in connection.introspection.table_names():
            cur.execute(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE %s', [f"%{KEY}%"])
            assert cur.fetchone()[0] == 0, table
    bodies = [api.get(f"/api/negotiations/{run.pk}/messages").content, api.get(f"/api/negotiations/{run.pk}").content,
              api.get(f"/api/batches/{batch.pk}/archive").content]
    assert all(KEY.encode() not in b for b in bodies)
    from analytics.archive import object_get

    assert KEY.encode() not in gzip.decompress(object_get(RunArchive.objects.get(run=run).url))
    assert KEY not in worker.log.read_text()


# --- a live room: the person buying hears each seller -------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_live_room_speaks_the_sellers_and_the_run_page_has_a_play_button(celery_worker: Any, settings: Any,
                                                                           client: Any) -> None:
    user = UserFactory(username="room-buyer")
    api = client_for(user)
    session = _session(user)
    settings.MAMS_LIVE_WAIT_SECONDS = 60
    start = api.post("/api/negotiations/start", {"session_id": str(session.pk), "item_name": "USB-C Cable",
                                                 "agents": LINEAR}, format="json").json()
    rid = start["negotiation_id"]
    r = api.post(f"/api/negotiations/{rid}/message", {"text": "I need 3 cables. Offers?", "recipients": ["all"],
                                                      "wait": True}, format="json")
    assert r.status_code == 200, r.content
    replies = r.json()["seller_responses"]
    assert len(replies) == 4 and all("audio_url" in s for s in replies)  # null until each is spoken
    wait_for(lambda: not Message.objects.filter(run_id=rid, sender_type="seller", audio__isnull=True).exists(),
             timeout=60, what="the replies spoken")
    lines = api.get(f"/api/negotiations/{rid}/messages").json()["messages"]
    urls = [m["audio_url"] for m in lines if m["sender_type"] == "seller"]
    assert len(urls) == 4 and all(urls)
    # each in its seller's voice, chosen by position alone: a seller's style is hidden from an outside buyer
    from negotiation import tts

    run = NegotiationRun.objects.get(pk=rid)
    for i, seller in enumerate(run.scenario["sellers"]):
        got = MessageAudio.objects.get(message__run=run, message__sender=seller["handle"]).voice
        voice_, pitch, speed = tts.local_voice(position=i, style="neutral")
        assert got == f"{voice_} pitch={pitch} speed={speed}", (seller["style"], got)
    # the person in the room may play each one
    for url in urls:
        got = api.get(url, HTTP_ACCEPT="audio/*")
        assert got.status_code == 200 and _wav_seconds(got.content) > 0.3
    # the run page (the room's transcript) has a play button per seller reply, in the buyer's lane
    client.force_login(type(user).objects.get(pk=user.pk))  # the factory's password is not saved
    got = client.get(f"/analytics/runs/{rid}/")
    assert got.status_code == 200, (got.status_code, got.get("Location"))
    page = got.content.decode()
    assert page.count("<audio controls") == 4 and all(url in page for url in urls)
    api.post(f"/api/negotiations/{rid}/decide", {"decision": "walk_away"}, format="json")
