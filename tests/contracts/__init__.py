"""Abstract test suites, one per port, run against every implementation."""
