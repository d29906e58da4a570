"""``FeatureService``: the named set of features one model uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ladle.definitions._common import check_name, check_str, check_tags, common_args, common_spec
from ladle.definitions.feature_logging import LoggingConfig
from ladle.definitions.feature_view import FeatureView, FeatureViewProjection
from ladle.definitions.on_demand import OnDemandFeatureView
from ladle.errors import DefinitionError


class FeatureService:
    """A model's features: whole views or projections ``fv[["a", "b"]]``.

    >>> FeatureService(name="price_model_v1", features=[prices, weather[["storm_index"]]])
    FeatureService(name='price_model_v1')

    ``pins`` reads a view at a stored version instead of its latest (``{"prices": 3}`` reads
    ``prices@v3``: its schema, ttl and source; see docs/versions.md). ``variants`` makes an A/B split
    instead: ``{arm: (service, weight)}`` where ``service`` is another feature service's name,
    optionally pinned (``"price_model@v2"``); each entity goes to one arm by a stable hash of its
    join-key values, and weights sum to 1. A split service lists no features of its own.

    >>> FeatureService(name="price_ab", variants={"control": ("price_model_v1", 0.9),
    ...                                            "treatment": ("price_model_v2", 0.1)})
    FeatureService(name='price_ab')
    """

    def __init__(
        self,
        name: str,
        features: Sequence[FeatureView | FeatureViewProjection | OnDemandFeatureView] = (),
        description: str = "",
        tags: Mapping[str, str] | None = None,
        owner: str = "",
        pins: Mapping[str, int] | None = None,
        variants: Mapping[str, tuple[str, float]] | None = None,
        logging_config: LoggingConfig | None = None,
    ) -> None:
        self.name = check_name("feature service", name)
        self.variants: dict[str, tuple[str, float]] = _check_variants(self.name, variants or {})
        projections: list[FeatureViewProjection] = []
        for item in features:
            if isinstance(item, FeatureView | OnDemandFeatureView):
                projections.append(item.projection())
            elif isinstance(item, FeatureViewProjection):
                projections.append(item)
            else:
                raise DefinitionError(
                    f"feature service '{name}': features must be feature views or projections, got {item!r}"
                )
        if self.variants and projections:
            raise DefinitionError(
                f"feature service '{name}': a split (variants=) lists no features; its arms' services do"
            )
        if not projections and not self.variants:
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
        self.pins: dict[str, int] = _check_pins(self.name, pins or {}, {p.view_name for p in projections})
        if logging_config is not None and not isinstance(logging_config, LoggingConfig):
            raise DefinitionError(f"feature service '{name}': logging_config must be a LoggingConfig")
        #: Log a sample of the served values (docs/feature-logging.md); None: not logged.
        self.logging_config = logging_config

    @property
    def is_split(self) -> bool:
        """Whether this service splits traffic between other services (``variants``)."""
        return bool(self.variants)

    @property
    def feature_view_names(self) -> list[str]:
        """Names of the views this service reads."""
        return [p.view_name for p in self.projections]

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready spec as stored in the registry."""
        spec: dict[str, Any] = {"name": self.name, "features": [p.to_spec() for p in self.projections]}
        # Only present when used, so the specs (and content hashes) of other services stay as they were.
        if self.pins:
            spec["pins"] = dict(sorted(self.pins.items()))
        if self.variants:
            spec["variants"] = [{"name": a, "service": s, "weight": w} for a, (s, w) in self.variants.items()]
        if self.logging_config is not None:  # absent when unset: older specs stay byte-identical
            spec["logging_config"] = self.logging_config.to_spec()
        return {**spec, **common_spec(self)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureService:
        """Rebuild from :meth:`to_spec` output."""
        return cls(
            name=spec["name"],
            features=[FeatureViewProjection.from_spec(p) for p in spec["features"]],
            pins=spec.get("pins"),
            variants={v["name"]: (v["service"], v["weight"]) for v in spec.get("variants", ())},
            **common_args(spec),
            logging_config=LoggingConfig.from_spec(spec["logging_config"]) if spec.get("logging_config") else None,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureService) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash(("feature_service", self.name))

    def __repr__(self) -> str:
        return f"FeatureService(name={self.name!r})"


def parse_pinned(text: str) -> tuple[str, int | None]:
    """``"name@v3"`` → ``("name", 3)``; ``"name"`` → ``("name", None)``; DefinitionError otherwise."""
    name, at, version = text.partition("@")
    if not at:
        return name, None
    if len(version) < 2 or version[0] != "v" or not version[1:].isdigit() or int(version[1:]) < 1:
        raise DefinitionError(f"'{text}' is not a pinned name: write 'name@vN' with N >= 1 (e.g. 'prices@v3')")
    return name, int(version[1:])


def _check_pins(service: str, pins: Mapping[str, int], views: set[str]) -> dict[str, int]:
    out = {}
    for view, version in pins.items():
        if view not in views:
            raise DefinitionError(f"feature service '{service}' pins view '{view}', which it does not read")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise DefinitionError(
                f"feature service '{service}': pin of '{view}' must be a version >= 1, got {version!r}"
            )
        out[view] = version
    return out


def _check_variants(service: str, variants: Mapping[str, tuple[str, float]]) -> dict[str, tuple[str, float]]:
    out: dict[str, tuple[str, float]] = {}
    for arm, target in variants.items():
        check_name("variant", arm)
        if not isinstance(target, tuple | list) or len(target) != 2:
            raise DefinitionError(f"feature service '{service}': variant '{arm}' must be (service name, weight)")
        name, weight = target
        if not isinstance(name, str) or isinstance(weight, bool) or not isinstance(weight, int | float):
            raise DefinitionError(f"feature service '{service}': variant '{arm}' must be (service name, weight)")
        if parse_pinned(name)[0] == service:
            raise DefinitionError(f"feature service '{service}': variant '{arm}' cannot split into itself")
        if not 0 <= weight <= 1:
            raise DefinitionError(f"feature service '{service}': weight of variant '{arm}' must be in [0, 1]")
        out[arm] = (name, float(weight))
    if out and abs(sum(w for _, w in out.values()) - 1.0) > 1e-6:
        total = sum(w for _, w in out.values())
        raise DefinitionError(f"feature service '{service}': variant weights must sum to 1, they sum to {total:g}")
    return out
