"""``tapfl bench``: what the engine costs on top of the arithmetic it must do.

Side by side in one process: a bare training step of a client model (the floor), the
engine's local-training step with data loading, and whole FL rounds; then, one fresh
process per size, how round time and memory grow with the number of clients.
See docs/PERFORMANCE.md for the figures and how to read them.
"""
