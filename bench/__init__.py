"""Benchmarks.

Run each as a module (``python -m bench.relay``): run as a script, ``bench/sagas.py``
would shadow the ``sagas`` package.
"""
