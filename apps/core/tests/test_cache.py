from django.core.cache import cache


def test_the_redis_cache_keeps_one_client_per_connection_pool():
    backend = cache._cache

    assert backend.get_client(write=True) is backend.get_client(write=True)
    assert cache.add("paysys-test-cache-key", "first", 5) is True
    assert cache.add("paysys-test-cache-key", "second", 5) is False  # add is atomic: the replay check
    assert cache.get("paysys-test-cache-key") == "first"
    cache.delete("paysys-test-cache-key")
