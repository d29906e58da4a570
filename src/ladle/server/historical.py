"""The server side of ``/get-historical-features``: check READ_OFFLINE for the caller, join, answer Arrow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ladle.definitions import AuthzedAction
from ladle.offline.remote.wire import decode_request, table_bytes

if TYPE_CHECKING:
    from ladle.security.principal import Principal
    from ladle.store import FeatureStore


def historical_answer(store: FeatureStore, body: bytes, principal: Principal, via: str = "rest") -> bytes:
    """Run a ``/get-historical-features`` request against ``store`` as ``principal``; the IPC answer."""
    from ladle.retrieval.historical import historical_job

    entity, request = decode_request(body)
    snapshot = store.snapshot()
    features: Any = request.get("features")
    if request.get("feature_service") is not None:
        features = snapshot.feature_service(request["feature_service"])
    store.enforcer.check_read(
        snapshot, principal, AuthzedAction.READ_OFFLINE, features, event="get_historical_features", source=via
    )
    full = bool(request.get("full_feature_names", False))
    job = historical_job(snapshot, store.offline_store, entity, features, full, bind=store.bind_views)
    return table_bytes(job.to_arrow())
