"""Online stores: the protocol, the pieces every store shares, and one folder per backend.

``base`` (protocol), ``columns`` / ``keys`` (write checks; the one entity key), ``arrays`` (NumPy
helpers) and ``codec/`` (the one row format, schema history) are shared; ``sqlite/`` and ``redis/``
(single node and cluster) hold only their own I/O. Layout and formats: docs/online.md, docs/redis.md.
"""
