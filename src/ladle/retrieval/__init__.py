"""Retrieval: online reads, historical (point-in-time) reads, pushes (references are resolved in ``ladle.definitions.refs``)."""
