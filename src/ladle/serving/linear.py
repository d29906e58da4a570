"""A linear model kept as JSON: the tutorial's OLS of the next day's crude price move, ready to serve.

>>> model = LinearModel(inputs=("price_change_24h", "rsi_14d"), weights=(0.1, -0.02), intercept=0.5)
>>> model.save("price_model_v1.json")
>>> load_linear_model("price_model_v1.json").predict(frame)   # frame: the feature service's columns

A row with a missing input (``None``: not found, or outside its view's ttl) gets ``NaN``, never a
number computed from a made-up value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ladle.errors import ConfigError, RequestError


@dataclass(frozen=True)
class LinearModel:
    """``intercept + sum(weight * input)`` over named feature columns."""

    inputs: tuple[str, ...]
    weights: tuple[float, ...]
    intercept: float = 0.0

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.weights) or not self.inputs:
            raise ConfigError(f"a linear model needs one weight per input, got {len(self.inputs)} inputs "
                              f"and {len(self.weights)} weights")  # fmt: skip
        if not all(math.isfinite(w) for w in (*self.weights, self.intercept)):
            raise ConfigError("a linear model's weights and intercept must be finite numbers")

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """One prediction per row of ``frame`` (NaN where an input is missing)."""
        missing = [name for name in self.inputs if name not in frame.columns]
        if missing:
            raise RequestError(f"the model's inputs {missing} are not among the features read: {list(frame.columns)}")
        x = frame[list(self.inputs)].astype("float64").to_numpy(na_value=np.nan)
        result: np.ndarray = self.intercept + x @ np.asarray(self.weights, dtype=np.float64)
        return result

    def save(self, path: str | Path) -> None:
        """Write the model as JSON."""
        body = {"inputs": list(self.inputs), "weights": list(self.weights), "intercept": self.intercept}
        Path(path).write_text(json.dumps(body, indent=2) + "\n")


def load_linear_model(path: str | Path) -> LinearModel:
    """Read a model :meth:`LinearModel.save` wrote (a model loader for :mod:`ladle.serving.ray_serve`)."""
    try:
        body = json.loads(Path(path).read_text())
        return LinearModel(tuple(body["inputs"]), tuple(float(w) for w in body["weights"]), float(body["intercept"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read a linear model from {path}: {exc}") from None
