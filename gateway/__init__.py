"""Composition root: settings, bootstrap, runtimes and console scripts."""
