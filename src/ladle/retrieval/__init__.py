"""Retrieval: feature references, online reads, historical (point-in-time) reads, pushes."""
