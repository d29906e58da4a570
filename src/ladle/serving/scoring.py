"""Requests → one feature read per batch → the model → one answer per request.

A request is an entity row: ``{"commodity_code": "crude_oil_wti", "country_code": "US", ...}`` (the
join keys of the feature service's views). :meth:`Scorer.score` takes the requests that arrived
together, reads the feature service once for all rows with the same join keys, calls the model once
on those rows and answers each request with its prediction and the features it was computed from.
A request that is not an entity row, or whose read fails (an unknown join key, a missing one), gets
its own :class:`~ladle.errors.LadleError` without failing the others.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ladle.errors import ConfigError, RequestError
from ladle.serving.features import FeatureReader

#: What a model loader may be given as: ``"package.module:function"`` or the function itself.
ModelLoader = str | Callable[..., Any]


class Model(Protocol):
    """A model: one prediction per row of a frame holding the feature service's columns."""

    def predict(self, frame: pd.DataFrame) -> Sequence[Any] | np.ndarray:
        """Predictions, in row order."""
        ...


def load_model(loader: ModelLoader, kwargs: Mapping[str, Any] | None = None) -> Any:
    """Call the model loader (an import path ``module:function`` or a callable) with ``kwargs``."""
    if isinstance(loader, str):
        module_name, _, attribute = loader.partition(":")
        if not module_name or not attribute:
            raise ConfigError(f"model loader {loader!r}: expected 'package.module:function'")
        try:
            function = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"model loader {loader!r} cannot be imported: {exc}") from None
    else:
        function = loader
    model = function(**dict(kwargs or {}))
    if not (hasattr(model, "predict") or callable(model)):
        raise ConfigError(f"model loader {loader!r} returned {type(model).__name__}, which has no predict()")
    return model


def _plain(value: Any) -> Any:
    """A JSON-ready value: numpy scalars as Python ones, NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Scorer:
    """Feature reads and model calls for batches of requests, with counters of what it did."""

    def __init__(self, reader: FeatureReader, model: Any) -> None:
        self.reader = reader
        self.model = model
        self._lock = threading.Lock()
        self.reads = 0
        self.rows = 0
        self.largest_read = 0

    def _predict(self, frame: pd.DataFrame) -> list[Any]:
        predict = self.model.predict if hasattr(self.model, "predict") else self.model
        predictions = list(np.asarray(predict(frame)).reshape(-1)) if len(frame) else []
        if len(predictions) != len(frame):
            raise RequestError(f"the model returned {len(predictions)} predictions for {len(frame)} rows")
        return predictions

    def score(self, requests: Sequence[Any]) -> list[dict[str, Any] | Exception]:
        """One answer per request, in order: ``{"prediction": ..., "features": {...}}`` or its error."""
        answers: list[dict[str, Any] | Exception | None] = [None] * len(requests)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, request in enumerate(requests):
            if isinstance(request, Mapping) and request and all(isinstance(k, str) for k in request):
                groups.setdefault(tuple(sorted(request)), []).append(i)
            else:
                answers[i] = RequestError(
                    f'a request is an object of join keys to values, e.g. {{"commodity_code": "crude_oil_wti"}}; '
                    f"got {type(request).__name__}"
                )
        for keys, members in groups.items():
            entities = {key: [requests[i][key] for i in members] for key in keys}
            try:
                columns = self.reader.read(entities)
                frame = pd.DataFrame(columns)
                predictions = self._predict(frame)
            except Exception as exc:  # this group's error (bad keys, or the model's), told to each of its requests
                for i in members:
                    answers[i] = exc
                continue
            with self._lock:
                self.reads += 1
                self.rows += len(members)
                self.largest_read = max(self.largest_read, len(members))
            features = [name for name in columns if name not in keys]
            for row, i in enumerate(members):
                answers[i] = {
                    "prediction": _plain(predictions[row]),
                    "features": {name: _plain(columns[name][row]) for name in features},
                }
        return [a if a is not None else RequestError("no answer") for a in answers]

    def stats(self) -> dict[str, int]:
        """How many reads served how many rows, and the most rows one read took."""
        with self._lock:
            return {"reads": self.reads, "rows": self.rows, "largest_read": self.largest_read}
