"""The shared backend: a stage's ledger in a Redis server, for crawls that run
on several workers (with scrapy-redis) or that should be inspectable from
elsewhere. Selected with ``CHECKPOINT_BACKEND = "redis://HOST:PORT/DB"``.

Only this package speaks Redis. Every step that must be atomic is one Lua
script (``lua/``), so it holds whatever the other workers do:

- ``connection``: clients, server identity, worker ids and their liveness;
- ``keys``: the names of a stage's keys;
- ``lock``: the exclusive stage lock and the heartbeat thread that renews it;
- ``store``: ``RedisStore``, the ledger, committed by ``lua/commit.lua``;
- ``leases``: ``StageWorker``, a worker's membership and its leases on requests
  taken from scrapy-redis's shared queue;
- ``backend``: ``RedisBackend``, how stages are created, found and moved aside.
"""
