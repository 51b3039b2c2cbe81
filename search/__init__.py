"""Reads the index: embeds a text or image query and returns the best-matching files.

Only reads the store; never writes it.
"""
