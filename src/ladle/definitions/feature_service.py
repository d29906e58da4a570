"""``FeatureService``: the named set of features one model uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ladle.definitions._common import check_name, check_str, check_tags, common_args, common_spec
from ladle.definitions.feature_logging import LoggingConfig
from ladle.definitions.feature_view import FeatureView, FeatureViewProjection
from ladle.errors import DefinitionError


class FeatureService:
    """A model's features: whole views or projections ``fv[["a", "b"]]``.

    >>> FeatureService(name="price_model_v1", features=[prices, weather[["storm_index"]]])
    FeatureService(name='price_model_v1')
    """

    def __init__(
        self,
        name: str,
        features: Sequence[FeatureView | FeatureViewProjection],
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        logging_config: LoggingConfig | None = None,
    ) -> None:
        self.name = check_name("feature service", name)
        projections: list[FeatureViewProjection] = []
        for item in features:
            if isinstance(item, FeatureView):
                projections.append(item.projection())
            elif isinstance(item, FeatureViewProjection):
                projections.append(item)
            else:
                raise DefinitionError(
                    f"feature service '{name}': features must be feature views or projections, got {item!r}"
                )
        if not projections:
            raise DefinitionError(f"feature service '{name}' has no features")
        prefixes = [p.name_to_use for p in projections]
        dupes = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if dupes:
            raise DefinitionError(
                f"feature service '{name}': views {dupes} appear twice; give one a name with .with_name()"
            )
        self.projections = projections
        self.description = check_str("feature service", name, "description", description)
        self.tags = check_tags("feature service", name, tags)
        self.owner = check_str("feature service", name, "owner", owner)
        if logging_config is not None and not isinstance(logging_config, LoggingConfig):
            raise DefinitionError(f"feature service '{name}': logging_config must be a LoggingConfig")
        #: Log a sample of the served values (docs/feature-logging.md); None: not logged.
        self.logging_config = logging_config

    @property
    def feature_view_names(self) -> list[str]:
        """Names of the views this service reads."""
        return [p.view_name for p in self.projections]

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        spec = {"name": self.name, "features": [p.to_spec() for p in self.projections], **common_spec(self)}
        if self.logging_config is not None:  # absent when unset: older specs stay byte-identical
            spec["logging_config"] = self.logging_config.to_spec()
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureService:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            features=[FeatureViewProjection.from_spec(p) for p in spec["features"]],
            **common_args(spec),
            logging_config=LoggingConfig.from_spec(spec["logging_config"]) if spec.get("logging_config") else None,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureService) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(("feature_service", self.name))

    def __repr__(self) -> str:
        return f"FeatureService(name={self.name!r})"
