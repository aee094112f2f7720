"""Application services: command handlers, webhook ingress, inbox appliers, timers."""
