"""Camera ownership across machines: which worker runs which camera, decided in Redis.

- ``rendezvous``: pure functions, weighted highest-random-weight hashing of cameras over the live
  workers with a per-worker cap (who *should* own each camera);
- ``leases``: a lease per camera (``SET NX PX``, compare-and-extend, compare-and-delete) and its
  fencing token (a counter bumped on every acquisition, so tokens only rise);
- ``membership``: workers' heartbeats with their capacity, and the live set;
- ``coordinator``: the loop a worker runs (heartbeat, renew, acquire, sticky hand-over, move rate
  limit, self-fencing before the lease can expire elsewhere, the owner history stream).

May import redis and ``pipeline.config``; never ``dashboard`` or the worker's internals (the worker
calls in through the coordinator's callbacks).
"""
