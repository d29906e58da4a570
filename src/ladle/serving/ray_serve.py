"""A Ray Serve deployment that answers model requests with features from the store.

Each replica loads the model once (``model_loader``: ``"package.module:function"`` or a callable,
called with ``model_kwargs``) and reads the feature service for its requests, through the SDK
(``repo_path`` / ``fs_yaml_file``: straight from the online store) or a running feature server
(``server_url``: ``ladle.RemoteClient`` over REST). Concurrent requests are gathered by
``@serve.batch`` (up to ``max_batch_size``, waiting at most ``batch_wait_timeout_s`` for more), so
one feature read and one model call serve the whole batch.

In Python::

    from ray import serve
    from ladle.serving.ray_serve import build_app

    app = build_app("price_model_v1", "ladle.serving.linear:load_linear_model",
                    {"path": "/models/price_model_v1.json"}, repo_path="/app/feature_repo")
    handle = serve.run(app, name="price_model", route_prefix="/price-model")
    handle.predict.remote({"commodity_code": "crude_oil_wti", "country_code": "US", "location_id": "JFK"}).result()
    # {"prediction": 0.12, "features": {"current_price": 71.3, ..., "storm_index": 0.0}}

From a Ray Serve config file (``serve run config.yaml``, or a KubeRay RayService)::

    applications:
      - name: price_model
        route_prefix: /price-model
        import_path: ladle.serving.ray_serve:app_builder
        args: {feature_service: price_model_v1, model_loader: "ladle.serving.linear:load_linear_model",
               model_path: /models/price_model_v1.json, repo_path: /app/feature_repo,
               fs_yaml_file: /etc/ladle/feature_store.yaml, num_replicas: 2}

Over HTTP, ``POST /price-model`` with the entity row as the JSON body answers the same object (400
with ``{"error": ...}`` for a bad request). Needs ``pip install 'ladle[serve]'``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ladle.errors import ConfigError, LadleError, MissingExtraError
from ladle.serving.features import FeatureReader, ServerFeatures, StoreFeatures
from ladle.serving.scoring import ModelLoader, Scorer, load_model

try:
    from ray import serve
    from ray.serve import Application
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingExtraError("Ray Serve", "serve", "ray[serve]") from None


class FeatureModelServer:
    """A model served with a feature service's online values (wrap with :func:`build_app`)."""

    def __init__(
        self,
        feature_service: str,
        model_loader: ModelLoader,
        model_kwargs: Mapping[str, Any] | None = None,
        *,
        repo_path: str | Path | None = None,
        fs_yaml_file: str | Path | None = None,
        server_url: str | None = None,
        credential: str | None = None,
        max_batch_size: int = 32,
        batch_wait_timeout_s: float = 0.005,
    ) -> None:
        reader: FeatureReader
        if server_url is not None:
            reader = ServerFeatures(feature_service, server_url=server_url, credential=credential)
        else:
            reader = StoreFeatures(feature_service, repo_path=repo_path, fs_yaml_file=fs_yaml_file,
                                   credential=credential)  # fmt: skip
        self.scorer = Scorer(reader, load_model(model_loader, model_kwargs))
        if max_batch_size < 1 or batch_wait_timeout_s < 0:
            raise ConfigError("max_batch_size must be at least 1 and batch_wait_timeout_s not negative")
        batched: Any = self.predict_batch  # Ray's batch wrapper, typed by Ray as the plain coroutine
        batched.set_max_batch_size(max_batch_size)
        batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    async def predict(self, entity_row: Mapping[str, Any]) -> dict[str, Any]:
        """The model's answer for one entity row: ``{"prediction": ..., "features": {...}}``."""
        answer = await self.predict_batch(entity_row)
        if isinstance(answer, BaseException):
            raise answer
        result: dict[str, Any] = answer
        return result

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)  # both set again in __init__
    async def predict_batch(self, entity_rows: list[Any]) -> list[dict[str, Any] | Exception]:
        """Every request of one batch: one feature read and one model call per set of join keys."""
        return await asyncio.to_thread(self.scorer.score, entity_rows)

    async def __call__(self, request: Any) -> Any:
        """HTTP: the JSON body is the entity row."""
        from starlette.responses import JSONResponse

        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be a JSON object of join keys to values"}, status_code=400)
        try:
            return await self.predict(body)
        except LadleError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    def stats(self) -> dict[str, int]:
        """Feature reads done by this replica, the rows they served and the most rows in one read."""
        return self.scorer.stats()


def build_app(
    feature_service: str,
    model_loader: ModelLoader,
    model_kwargs: Mapping[str, Any] | None = None,
    *,
    name: str = "feature_model",
    num_replicas: int = 1,
    ray_actor_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Application:
    """The bound Ray Serve application (``options``: :class:`FeatureModelServer`'s keyword arguments)."""
    deployment = serve.deployment(
        name=name, num_replicas=num_replicas, ray_actor_options=dict(ray_actor_options or {"num_cpus": 0.5})
    )(FeatureModelServer)
    application: Application = deployment.bind(feature_service, model_loader, model_kwargs, **options)
    return application


_INT_ARGS = {"num_replicas", "max_batch_size"}
_FLOAT_ARGS = {"batch_wait_timeout_s"}
_TEXT_ARGS = {"name", "repo_path", "fs_yaml_file", "server_url", "credential"}


def app_builder(args: Mapping[str, Any]) -> Application:
    """Build the application from a Ray Serve config's ``args`` (all values may be strings).

    ``feature_service`` and ``model_loader`` are required; ``model_<name>`` keys become the model
    loader's keyword arguments (``model_path`` → ``path``); the rest are :func:`build_app`'s.
    """
    values = dict(args)
    try:
        feature_service = str(values.pop("feature_service"))
        model_loader = str(values.pop("model_loader"))
    except KeyError as exc:
        raise ConfigError(f"Ray Serve args: {exc.args[0]!r} is required") from None
    model_kwargs = {k.removeprefix("model_"): v for k, v in list(values.items()) if k.startswith("model_")}
    options: dict[str, Any] = {}
    for key, value in values.items():
        if key.startswith("model_"):
            continue
        if key in _INT_ARGS:
            options[key] = int(value)
        elif key in _FLOAT_ARGS:
            options[key] = float(value)
        elif key in _TEXT_ARGS:
            options[key] = str(value)
        else:
            known = sorted({"feature_service", "model_loader", "model_<name>", *_INT_ARGS, *_FLOAT_ARGS, *_TEXT_ARGS})
            raise ConfigError(f"Ray Serve args: unknown key {key!r}; known: {', '.join(known)}")
    return build_app(feature_service, model_loader, model_kwargs, **options)
