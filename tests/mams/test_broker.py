"""mams/broker.py: the broker connection that Celery closes after a connection loss must not crash the
worker. The exact sequence of `Consumer.on_connection_error_after_connected`, against a real Redis:
the transport detached by `collect()`, then `close()` of a default channel that still holds an
unacknowledged message."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange, Queue

from tests.ops.conftest import PrivateRedis, free_port

STOCK = "kombu.transport.redis:Transport"
MAMS = "mams.broker:Transport"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    srv = PrivateRedis(port=free_port(), dir=tmp_path / "redis")
    srv.dir.mkdir()
    srv.start()
    yield srv
    srv.shutdown()
    shutil.rmtree(srv.dir, ignore_errors=True)


def _connection_holding_an_unacked_message(url: str, transport: str) -> Connection:
    conn = Connection(url, transport=transport)
    channel = conn.default_channel
    queue = Queue("rounds", Exchange("rounds", type="direct"), routing_key="rounds", channel=channel)
    queue.declare()
    conn.Producer(channel).publish({"turn": 1}, exchange=queue.exchange, routing_key="rounds", declare=[queue])
    message = queue.get(no_ack=False)  # delivered, not acknowledged (acks_late)
    assert message is not None and message.payload == {"turn": 1}
    return conn


def _lose_the_connection_as_celery_does(conn: Connection) -> None:
    # (the channel's exit-time restore would only print a second failure at interpreter exit)
    conn._default_channel.qos._on_collect.cancel()
    # what collect() ends with: the transport is detached from the connection ...
    conn._do_close_transport()
    # ... while the default channel survived its first close (its pending read failed half-way)
    assert conn._default_channel is not None and not conn._default_channel.closed


def test_stock_kombu_crashes_on_this_sequence(server: PrivateRedis) -> None:
    # given kombu's own Redis transport and a channel holding an unacked message
    conn = _connection_holding_an_unacked_message(server.url, STOCK)
    _lose_the_connection_as_celery_does(conn)
    # when Celery then closes the connection (ignore_errors(connection, connection.close))
    # then the upstream bug: an AttributeError that no error handler on this path catches
    with pytest.raises(AttributeError, match="hostname"):
        conn.close()


def test_the_mams_transport_closes_cleanly_and_keeps_the_message_for_redelivery(server: PrivateRedis) -> None:
    # given the MAMS transport and a channel holding an unacked message
    conn = _connection_holding_an_unacked_message(server.url, MAMS)
    _lose_the_connection_as_celery_does(conn)
    # when Celery closes the connection
    conn.close()
    # then nothing escapes, and the message is still in Redis's unacked hash, so the visibility-timeout
    # restore hands it to a worker again (nothing lost)
    assert redis.Redis.from_url(server.url).hlen("unacked") == 1


def test_a_detached_channel_reports_a_connection_error(server: PrivateRedis) -> None:
    conn = _connection_holding_an_unacked_message(server.url, MAMS)
    channel = conn.default_channel
    _lose_the_connection_as_celery_does(conn)
    channel._disconnect_pools()
    with pytest.raises(redis.exceptions.ConnectionError, match="detached"):
        channel._create_client()
    assert isinstance(redis.exceptions.ConnectionError(), conn.connection_errors)


def test_celery_uses_the_mams_transport_for_a_redis_broker() -> None:
    from mams.celery import app

    with app.connection_for_write() as conn:
        assert type(conn.transport).__module__ == "mams.broker"


def test_a_channel_dropped_by_its_closed_transport_reports_a_connection_error(server: PrivateRedis) -> None:
    # given a publishing channel whose transport was closed under it (a task thread's publish racing the
    # consumer's reconnect: the channel's `connection` is None)
    conn = _connection_holding_an_unacked_message(server.url, MAMS)
    channel = conn.default_channel
    channel.qos._on_collect.cancel()
    channel._disconnect_pools()
    channel.connection = None
    # then a new client is refused with a connection error, which kombu's publish retry and the turn's
    # infrastructure retry both handle, not an AttributeError that fails the run
    with pytest.raises(redis.exceptions.ConnectionError, match="detached"):
        channel._create_client()
