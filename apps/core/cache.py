"""The cache backend: Django's Redis cache, keeping its redis-py clients.

Django's `RedisCacheClient.get_client` builds a new `redis.Redis` for every cache call, and that
constructor sets up some 170 response callbacks: it showed in the profile of every API request
(the replay check is a cache call). A `redis.Redis` is thread-safe (connections come from its
pool), so one per connection pool is kept and reused.
"""

import threading

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}
        self._clients_lock = threading.Lock()

    def get_client(self, key=None, *, write=False):
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            with self._clients_lock:
                client = self._clients.get(index)
                if client is None:
                    client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
