"""Row formats: all features of one (entity, view) as one blob, encoded and decoded vectorized.

``stamped`` starts with the event and created timestamps, for stores that compare next to the data
(Redis; any key-value store); ``versioned`` is for stores that keep the timestamps beside the blob
(SQLite). Both carry a schema fingerprint; ``history`` decodes rows of older schemas for both.
"""
