"""Locust integration: the device engine of `syncsim run` inside Locust (docs/locust.md).

- `loop`: the asyncio engine on an event loop in a real OS thread; greenlets wait on it.
- `entries`: what a sync becomes in Locust's statistics (names, times, bytes, failures).
- `plugin` (and `bridge`, `coordinator`, `host`, `messages`, `users`, `webui`, one job each): Locust
  users per scenario class, the rollout shape, the server, syncsim's report.
- `locustfile`: the file given to `locust -f`.

Nothing here imports gevent or Locust at module level except those and `locustfile`, so the
rest of syncsim never pays for Locust's monkey patching.
"""
