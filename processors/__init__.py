"""Processor adapters behind the PaymentPort protocol, circuit breaker, routing."""
