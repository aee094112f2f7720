"""Test suite: unit (no I/O), integration (real Postgres, emulator), e2e."""
