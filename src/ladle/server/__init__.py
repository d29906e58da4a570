"""The feature server: Feast-compatible REST and gRPC, metrics, health, several workers.

Modules, from the outside in: ``runner`` (the ``ladle serve`` supervisor) starts ``worker``
processes; each serves ``rest`` (a raw ASGI app) and ``grpc_service`` on one event loop over a
shared ``core`` (limits, reads with metrics, writes, materialization ``jobs``). ``codec`` and
``wire`` encode responses (JSON, protobuf bytes), ``status`` maps errors to HTTP/gRPC statuses and
Feast's error bodies, ``settings`` declares every setting once, ``metrics`` and ``health`` observe.
``protos/`` holds the ``.proto`` files; ``_proto/`` the stubs generated from them.

Importing this package imports nothing heavy; ``ladle.server.rest.create_app(store)`` gives the
ASGI app (see docs/server.md).
"""
