"""The feature server: Feast-compatible REST and gRPC, metrics, health, several workers.

Modules, from the outside in: ``runner`` (the ``ladle serve`` supervisor) starts ``worker``
processes; each serves ``rest`` (a raw ASGI app) and ``grpc_server`` on one event loop over a
shared ``core`` (limits, reads with metrics, writes, materialization ``jobs``). ``grpc_server``
runs one of two engines, ``grpc_h2`` (the built-in ``h2grpc`` HTTP/2 server, the default) or
``grpc_grpcio`` (grpc.aio), over the services both share in ``grpc_service``; ``sockets`` binds
the listening sockets. ``codec`` and
``wire`` encode responses (JSON, protobuf bytes), ``status`` maps errors to HTTP/gRPC statuses and
Feast's error bodies, ``settings`` declares every setting once, ``metrics`` and ``health`` observe.
``protos/`` holds the ``.proto`` files; ``_proto/`` the stubs generated from them.

Importing this package imports nothing heavy; ``ladle.server.rest.create_app(store)`` gives the
ASGI app (see docs/server.md).
"""
