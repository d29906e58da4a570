"""Retrieval: online reads, historical (point-in-time) reads, pushes.

Feature references are resolved in :mod:`ladle.definitions.refs`, beside the definitions.
"""
