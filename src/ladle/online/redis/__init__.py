"""The Redis / Redis Cluster online store: only Redis's I/O (keys, RESP, scripts, connections).

The store class is ``ladle.online.redis.store.RedisOnlineStore`` (entry point ``redis``); see
docs/redis.md.
"""
