"""The row format of every online store: all features of one (entity, view) as one blob.

``stamped`` (encoding) and ``stamped_decode`` (decoding, vectorized): a row starts with its event
and created timestamps, then a layout fingerprint; ``history`` decodes rows of older schemas.
"""
