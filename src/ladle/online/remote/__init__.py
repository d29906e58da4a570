"""``online_store: {type: remote, path: http://host:6566}``: the SDK reads from a Ladle (or Feast) server.

:class:`~ladle.online.remote.store.RemoteOnlineStore` forwards whole ``get_online_features`` requests
to the server's REST API (one round trip; the server resolves references, applies ttl, runs
on-demand views and checks permissions) and parses the column-major answer back into an
:class:`~ladle.retrieval.response.OnlineResponse`. It is also a plain online store (``read`` and
``write`` over the same API) so materialization and pushes can go through a server.
"""
