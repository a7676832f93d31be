"""Celery's broker transport: kombu's Redis transport with one fix, so a Redis restart never kills a worker.

The bug (kombu 5.7 with Celery 5.7, seen here about once per 40 Redis restarts under load; the same
trace as kombu issue 582, celery/kombu#582): when the consumer loses the broker, Celery's
`Consumer.on_connection_error_after_connected` first calls `connection.collect()` and then
`connection.close()`. `collect()` closes the connection's channels and then detaches the transport
(`Connection._do_close_transport` sets `transport.client = None`). But closing the default channel
can itself fail half-way with the broker down (its pending BRPOP read raises before the channel is
marked closed), and kombu then keeps that channel as `_default_channel`. The following `close()`
closes it again; the channel restores its unacknowledged messages (`QoS.restore_unacked`), which
builds a new Redis connection pool from `_connparams()`, which reads `self.connection.client.hostname`
with `client` now None: AttributeError. That is not a connection error, so neither kombu's
`maybe_close_channel` nor Celery's `ignore_errors` catches it; it reaches `WorkController.start`
("Unrecoverable error"), and the worker process exits.

The fix: a channel whose transport has been detached (or which its closed transport has dropped)
raises a Redis ConnectionError from `_connparams` instead. That is what the channel's state
really is (its connection is gone), and every caller on these paths already handles a connection
error: the close is abandoned, a publish is retried on a new connection, Celery reconnects, and
the messages that channel had not acknowledged stay in Redis's `unacked` hash, from where the
visibility-timeout restore gives them back (acks_late).
Tested in tests/mams/test_broker.py (the exact sequence, against a real Redis) and by `make soak`.
Remove it when kombu clears `_default_channel` in `collect()` or guards `_connparams`.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        # Both halves of the race: the transport detached from its connection (client None), or the
        # channel already dropped by its closed transport (connection None; seen on the publish path
        # of a task thread in `make soak`, where it failed the run with an AttributeError).
        if self.connection is None or self.connection.client is None:
            raise RedisConnectionError("this channel's broker connection was closed (its transport is detached); "
                                       "a new connection is needed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]  # kombu's private method


class Transport(kombu_redis.Transport):
    Channel = Channel
