"""The simulated device: local store, outbox, sync engine and lifecycle. Never imports the server."""
