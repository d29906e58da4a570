"""``OnlineResponse``: the column-major result of ``get_online_features``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from ladle.types import FieldStatus

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class OnlineResponse:
    """Feature values for N entity rows, column-major like Feast's wire format.

    ``feature_names`` lists the join-key columns first (in request order), then the features.
    ``values[i][j]`` is the value of ``feature_names[i]`` for entity row ``j``;
    ``statuses[i][j]`` its :class:`~ladle.types.FieldStatus`; ``event_timestamps[i][j]`` the event
    time in microseconds since the epoch (0 for join keys and missing values).

    When a split service (A/B, docs/versions.md) answered, ``variant`` names the arm that served
    every row, and ``variants`` lists the arm of each row; if rows went to different arms,
    ``variant`` is None and only ``variants`` tells them apart. Both are None without a split.
    """

    feature_names: list[str]
    values: list[list[Any]]
    statuses: list[list[int]]
    event_timestamps: list[list[int]]
    variant: str | None = None
    variants: list[str] | None = None
    #: The store read an on-demand answer was computed from (its columns follow the plan's reads).
    base: OnlineResponse | None = field(default=None, repr=False, compare=False)
    #: After a split read: each arm's own answer as (arm, the arm's service name, its response), which
    #: feature logging writes to the arm service's log (docs/feature-logging.md, "A/B splits").
    arms: list[tuple[str, str, OnlineResponse]] | None = field(default=None, repr=False, compare=False)
    #: When every feature column came whole from fixed-width store records (every row present, no
    #: null, within ttl): per view read, ``(ViewRead, (layout, buffer, offset))`` as in
    #: :attr:`ladle.online.base.ViewRows.raw`. Feature logging decodes these with NumPy.
    records: list[tuple[Any, Any]] | None = field(default=None, repr=False, compare=False)

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, list[Any]]:
        """``{name: [value per entity row]}``, join keys included (Feast's shape).

        With ``include_event_timestamps=True`` each feature also gets ``<name>__ts`` (UTC datetimes).
        """
        out = dict(zip(self.feature_names, self.values, strict=True))
        if include_event_timestamps:
            for name, ts in zip(self.feature_names, self.event_timestamps, strict=True):
                out[f"{name}__ts"] = [_EPOCH + timedelta(microseconds=t) for t in ts]
        return out

    def to_df(self, include_event_timestamps: bool = False) -> pd.DataFrame:
        """The same as :meth:`to_dict`, as a pandas DataFrame."""
        return pd.DataFrame(self.to_dict(include_event_timestamps))

    def statuses_dict(self) -> dict[str, list[FieldStatus]]:
        """``{name: [FieldStatus per entity row]}``."""
        return {n: [FieldStatus(s) for s in col] for n, col in zip(self.feature_names, self.statuses, strict=True)}

    @property
    def row_count(self) -> int:
        """Number of entity rows."""
        return len(self.values[0]) if self.values else 0
