"""The audit archive (analytics/archive.py): every ended run, gzip JSON, in a real S3-compatible store.

The store is moto in server mode on a loopback port (started here, as the fake LLM is), so boto3's real
signing and HTTP run; the worker is the real Celery process, pointed at it through its environment.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics import archive
from analytics.checks import archive_store_check
from analytics.models import RunArchive
from negotiation.models import Batch, NegotiationRun
from negotiation.services.batches import batch_create
from negotiation.services.scenarios import sample_session_load
from tests.conftest import queues_taken_from, start_worker, stop_worker, wait_for, wait_for_batch

LLM = {"buyer": {"profile": "openai-compatible"}, "seller": {"profile": "openai-compatible"},
       "analyst": {"profile": "openai-compatible"}}
KEYS = {"AWS_ACCESS_KEY_ID": "testing-access", "AWS_SECRET_ACCESS_KEY": "testing-secret-0123456789",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "mams-audit"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server._server.server_address[:2]  # the bound address
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    for k, v in {**KEYS, "AWS_ENDPOINT_URL_S3": s3_server}.items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3", endpoint_url=s3_server)
    if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=BUCKET)
    return client


def _batch(runs: int = 2, disclosure: str = "redact") -> Batch:
    return batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=runs, agents=LLM, max_rounds=3,
                        disclosure=disclosure)


def _read(client: Any, key: str) -> dict[str, Any]:
    return json.loads(gzip.decompress(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


# --- the URL and the check ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["", "http://example.com/x", "s3://", "s3://Bad_Bucket/x", "s3://ab/x",
                                 "s3://bucket/x?endpoint=y", "file://relative/path", "ftp://host/x"])
def test_an_invalid_archive_url_is_refused_with_what_to_fix(url: str) -> None:
    with pytest.raises(archive.ArchiveConfigError) as err:
        archive.target_parse(url)
    assert "MAMS_ARCHIVE_URL" in str(err.value) or "bucket" in str(err.value)


def test_keys_are_prefix_batch_run() -> None:
    t = archive.target_parse("s3://mams-audit/trail/v1/")
    assert (t.bucket, t.prefix) == ("mams-audit", "trail/v1")
    assert t.key(batch_id="b", run_id="r") == "trail/v1/b/r.json.gz"
    assert t.url("trail/v1/b/r.json.gz") == "s3://mams-audit/trail/v1/b/r.json.gz"


def test_manage_py_check_names_an_invalid_url_and_a_missing_bucket(settings: Any, s3: Any) -> None:
    settings.MAMS_ARCHIVE_URL = "s3://No_Such"
    (err,) = archive_store_check()
    assert err.id == "mams.E120" and "bucket name" in err.msg
    settings.MAMS_ARCHIVE_URL = "s3://mams-nonexistent-bucket/x"
    (err,) = archive_store_check()
    assert err.id == "mams.E121" and "does not exist" in err.msg
    with pytest.raises(Exception, match="mams-nonexistent-bucket"):  # SystemCheckError: the command stops
        call_command("check")
    settings.MAMS_ARCHIVE_URL = f"s3://{BUCKET}/trail"
    assert archive_store_check() == []


# --- written by the worker at the run's end -----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_every_ended_run_is_archived_once_in_the_s3_store(s3: Any, s3_server: str, celery_worker: Any, llm: Any,
                                                          settings: Any, client: Any, django_user_model: Any) -> None:
    # given a worker whose archive is the S3 store on loopback (the shared worker leaves that queue to it)
    with queues_taken_from(celery_worker, "archive"):
        _archive_to_s3(s3, s3_server, llm, settings, client, django_user_model)


def _archive_to_s3(s3: Any, s3_server: str, fake_llm: Any, settings: Any, client: Any, django_user_model: Any
                   ) -> None:
    worker = start_worker(db_name=settings.DATABASES["default"]["NAME"], llm_url=fake_llm.base_url, name="archive",
                          extra_env={**KEYS, "AWS_ENDPOINT_URL_S3": s3_server,
                                     "MAMS_ARCHIVE_URL": f"s3://{BUCKET}/trail"})
    try:
        # when a batch of two runs is played to its end
        batch = _batch(runs=2)
        wait_for_batch(batch.pk, timeout=90, worker=worker)
        wait_for(lambda: RunArchive.objects.filter(batch=batch, status="archived").count() == 2, timeout=60,
                 what="two archived runs")
    finally:
        stop_worker(worker)
    # then each run is one object at <prefix>/<batch>/<run>.json.gz, recorded with its size and checksum
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"trail/{batch.pk}/")["Contents"]
    runs = list(NegotiationRun.objects.filter(batch=batch))
    assert sorted(o["Key"] for o in listed) == sorted(f"trail/{batch.pk}/{r.pk}.json.gz" for r in runs)
    for run in runs:
        row = RunArchive.objects.get(run=run)
        body = s3.get_object(Bucket=BUCKET, Key=row.key)["Body"].read()
        assert row.size == len(body) and row.sha256 == hashlib.sha256(body).hexdigest()
        assert row.url == f"s3://{BUCKET}/{row.key}"
        doc = json.loads(gzip.decompress(body))
        # the transcript, every message with its lanes' visibility, the outcome, metrics and fingerprints
        assert doc["run"]["id"] == str(run.pk) and doc["run"]["status"] == "completed"
        assert len(doc["messages"]) == run.messages.count() > 0
        for m in doc["messages"]:
            assert "buyer" in m["visible_to"] and m["sender"] in m["visible_to"]
            if m["sender"] != "buyer":  # a seller's reply goes to the buyer alone
                assert sorted(m["visible_to"]) == sorted(["buyer", m["sender"]])
        assert doc["outcome"]["decision"] == run.outcome.decision
        assert doc["metrics"]["rounds"] == run.metrics.rounds
        assert doc["fingerprint"] == {"buyer": run.buyer_fingerprint, "sellers": run.seller_fingerprint}
        # and writing it again leaves one identical object (same bytes; no second write)
        assert archive.record_bytes(archive.run_record(run=run)) == body
        again = archive.run_archive(run_id=run.pk)
        assert again.sha256 == row.sha256
    assert len(s3.list_objects_v2(Bucket=BUCKET, Prefix=f"trail/{batch.pk}/")["Contents"]) == 2
    # the API lists them and serves each object; the batch page links each one
    user = django_user_model.objects.create_user("auditor")
    Batch.objects.filter(pk=batch.pk).update(owner=user)
    client.force_login(user)
    body = client.get(f"/api/batches/{batch.pk}/archive").json()
    assert body["archived"] == body["runs_ended"] == 2 and body["store_problem"] is None
    entry = body["runs"][0]
    got = client.get(entry["download"])
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == entry["sha256"]
    page = client.get(f"/analytics/batches/{batch.pk}/").content.decode()
    assert entry["download"] in page
    # the keys never reach the database, a response or the worker's log
    secret = KEYS["AWS_SECRET_ACCESS_KEY"]
    assert secret not in json.dumps(body) and secret not in page and secret not in worker.log.read_text()


def test_a_redacted_number_is_archived_as_said_and_as_each_lane_received_it(db: Any, play_through: Any,
                                                                            llm: Any, tmp_path: Any,
                                                                            settings: Any) -> None:
    # given sellers that state their own floor in the text, under the default redact rule
    from tests.fakes.policies import negotiation

    def leaky(req: Any) -> str:
        out = negotiation(req)
        if "Your absolute bottom line: $" in req.text and '"offer"' in out:
            floor = req.text.split("Your absolute bottom line: $")[1].split()[0]
            out = out.replace('"message": "', f'"message": "My floor is ${floor}, but ', 1)
        return out

    session = sample_session_load()
    llm.policy = leaky
    settings.MAMS_ARCHIVE_URL = f"file://{tmp_path}"
    batch = batch_create(session=session, item_name="USB-C Cable", runs=1, agents=LLM, max_rounds=2)
    run = play_through(NegotiationRun.objects.get(batch=batch).pk)
    # when it is archived to a local folder
    row = archive.run_archive(run_id=run.pk)
    doc = json.loads(gzip.decompress((tmp_path / row.key).read_bytes()))
    # then the archive keeps the words as said, and what the buyer's lane received where they differ
    said = [m for m in doc["messages"] if m["sender"] != "buyer" and "My floor is $" in m["text"]]
    assert said
    for m in said:
        floor = m["text"].split("My floor is $")[1].split(",")[0]
        assert floor in m["text"] and floor not in m["delivered_text"]["buyer"]
    # and a second write of the same run is byte-identical and writes nothing
    assert archive.object_put(archive.target_parse(settings.MAMS_ARCHIVE_URL), row.key,
                              (tmp_path / row.key).read_bytes(), row.sha256) is False


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_an_unreachable_store_never_fails_or_delays_a_run(celery_worker: Any, llm: Any, settings: Any, client: Any,
                                                         django_user_model: Any) -> None:
    with queues_taken_from(celery_worker, "archive"):
        _unreachable(llm, settings, client, django_user_model)


def _unreachable(fake_llm: Any, settings: Any, client: Any, django_user_model: Any) -> None:
    # given a worker whose S3 endpoint is a loopback port nothing listens on, retrying twice
    dead = f"http://127.0.0.1:{free_port()}"
    worker = start_worker(db_name=settings.DATABASES["default"]["NAME"], llm_url=fake_llm.base_url, name="dead-s3",
                          extra_env={**KEYS, "AWS_ENDPOINT_URL_S3": dead, "MAMS_ARCHIVE_URL": f"s3://{BUCKET}/x",
                                     "MAMS_ARCHIVE_MAX_RETRIES": "2", "MAMS_ARCHIVE_TIMEOUT_SECONDS": "1"})
    try:
        # when a batch is played
        batch = _batch(runs=2)
        wait_for_batch(batch.pk, timeout=90, worker=worker)
        # then every run completed as usual
        assert set(NegotiationRun.objects.filter(batch=batch).values_list("status", flat=True)) == {"completed"}
        batch.refresh_from_db()
        assert batch.status == "completed"
        # and the archive task retried, then recorded the error on each run
        wait_for(lambda: RunArchive.objects.filter(batch=batch, status="failed").count() == 2, timeout=90,
                 what="two failed archives")
    finally:
        stop_worker(worker)
    row = RunArchive.objects.filter(batch=batch).first()
    assert "gave up after 2 retries" in row.error and "127.0.0.1" in row.error and row.attempts == 3
    # and the batch page shows it
    user = django_user_model.objects.create_user("owner")
    Batch.objects.filter(pk=batch.pk).update(owner=user)
    client.force_login(user)
    page = client.get(f"/analytics/batches/{batch.pk}/").content.decode()
    assert "2 runs could not be archived" in page and "gave up after 2 retries" in page


def test_the_batch_page_says_when_the_archive_url_is_invalid(db: Any, settings: Any, client: Any,
                                                            django_user_model: Any) -> None:
    settings.MAMS_ARCHIVE_URL = "s3://Not A Bucket"
    user = django_user_model.objects.create_user("owner2")
    batch = _batch(runs=1)
    Batch.objects.filter(pk=batch.pk).update(owner=user)
    client.force_login(user)
    page = client.get(f"/analytics/batches/{batch.pk}/").content.decode()
    assert 'id="archive-problem"' in page and "not a valid bucket name" in page
    assert client.get(f"/api/batches/{batch.pk}/archive").json()["store_problem"]


@pytest.mark.django_db
def test_archive_backfill_writes_ended_runs_and_refuses_a_bad_batch_id(play_through: Any, llm: Any, tmp_path: Any,
                                                                       settings: Any, capsys: Any) -> None:
    settings.MAMS_ARCHIVE_URL = f"file://{tmp_path}/trail"
    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=2, agents=LLM, max_rounds=2)
    for run in NegotiationRun.objects.filter(batch=batch):
        play_through(run.pk)
    assert not RunArchive.objects.exists()  # play_through queues nothing
    call_command("archive_backfill", "--batch", str(batch.pk))
    out = capsys.readouterr().out
    assert "archived 2 run(s), 0 failed" in out
    assert len(list((tmp_path / "trail" / str(batch.pk)).glob("*.json.gz"))) == 2
    call_command("archive_backfill", "--batch", str(batch.pk))  # nothing left to do
    assert "archived 0 run(s), 0 failed" in capsys.readouterr().out
    with pytest.raises(CommandError, match="not a batch id"):
        call_command("archive_backfill", "--batch", "nope")


@pytest.mark.django_db
def test_the_sweep_queues_runs_whose_archive_was_never_queued(play_through: Any, llm: Any,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from django.utils import timezone

    batch = batch_create(session=sample_session_load(), item_name="USB-C Cable", runs=2, agents=LLM, max_rounds=2)
    runs = [play_through(r.pk) for r in NegotiationRun.objects.filter(batch=batch)]
    queued: list[Any] = []
    monkeypatch.setattr(archive, "archive_enqueue", lambda run_id, **k: queued.append(run_id))
    # just ended: left to the task queued at the run's end
    assert archive.archive_sweep(older_than_seconds=600) == 0
    # ended an hour ago with no archive row: queued; one with a row: left alone
    NegotiationRun.objects.filter(batch=batch).update(ended_at=timezone.now() - timezone.timedelta(hours=1))
    RunArchive.objects.create(run=runs[0], batch=batch, status="failed", error="x")
    assert archive.archive_sweep(older_than_seconds=600) == 1 and queued == [runs[1].pk]


def test_the_same_record_gives_the_same_bytes_at_any_time(monkeypatch: pytest.MonkeyPatch) -> None:
    record = {"b": [1, "é", None], "a": {"z": 1, "y": "2"}}
    first = archive.record_bytes(record)
    monkeypatch.setattr(gzip.time, "time", lambda: 2_000_000_000.0)  # gzip stamps the time unless told not to
    assert archive.record_bytes(dict(reversed(record.items()))) == first
    assert json.loads(gzip.decompress(first)) == record


def test_an_error_never_carries_the_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    text = archive.describe(RuntimeError("signature for wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY did not match"))
    assert "wJalrXUtnFEMI" not in text and "[secret]" in text
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")  # too short to be a key: the words stay whole
    assert archive.describe(RuntimeError("no such bucket")) == "RuntimeError: no such bucket"
