"""Writes the index: walk -> read & decode (workers) -> embed (batches) -> store.

Each stage is one short module with one job; ``run.index_folders`` wires them.
Importing this package is cheap; torch arrives with the encoder.
"""
