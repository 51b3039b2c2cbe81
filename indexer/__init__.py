"""Writes the index: plan -> decode + embed -> write, each stage a short module (``indexer.run`` reads top to bottom).

Importing this package is cheap; torch arrives with the encoder.
"""
