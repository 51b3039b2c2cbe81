"""Writes the index: plan -> route -> decode -> embed -> write, then the stages after the sweep, each a short module
(``indexer.run`` reads top to bottom; ``indexer.engine`` is what decodes and embeds).

Importing this package is cheap; torch arrives with the encoder.
"""
