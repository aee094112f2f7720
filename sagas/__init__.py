"""Pure saga state machines: no I/O, no clock, no randomness."""
