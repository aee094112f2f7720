"""Vendor sandboxes for dev and tests: stateful fakes of vendor HTTP APIs on loopback."""
