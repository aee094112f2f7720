"""Integration tests: real Postgres, the Pub/Sub emulator and sandbox vendors over HTTP."""
