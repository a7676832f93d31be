"""Kombu's Redis transport, with one Redis client per channel instead of one per command.

Kombu builds a new `redis.Redis` around its connection pool for every publish and every ack. In
redis-py 7 a client's constructor inspects its own signature (a deprecation check) and sets up an
event dispatcher, about 0.17 ms each on these machines, two or three times per negotiation turn.
A client holds no connection of its own (the pool does) and is safe to share between threads, so
a channel keeps the one it built while its pool is the same; after a fork or a reconnect kombu
makes a new pool, and with it a new client. Selected by CELERY_BROKER_TRANSPORT for redis:// URLs.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # BRPOP and pub/sub clients are made once per channel already
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self.__dict__.get("_mams_client")
        if client is None or client.connection_pool is not pool:
            client = super()._create_client()
            self.__dict__["_mams_client"] = client
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
