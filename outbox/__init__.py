"""Transactional outbox: store, relay, CloudEvents mapping, publisher."""
