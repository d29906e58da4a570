"""Run in Feast's venv: ``feast apply`` a repo, then print its objects as Feast itself reads them back (JSON).

    python feast_dump.py LADLE_SITE_PACKAGES REPO

Ladle's site-packages come last on ``sys.path`` only so Feast's SQL registry finds a PostgreSQL
driver (psycopg) that Feast's own venv lacks. The JSON is the expected side of the import tests:
it comes from Feast's SDK, not from Ladle's proto decoding. After the apply it also makes a saved
dataset with Feast's own ``create_saved_dataset`` (so the registry holds one) and reads it back.
"""

import json
import math
import sys


def _fields(fields):  # type: ignore[no-untyped-def]
    return [[f.name, str(f.dtype), f.description, dict(f.tags)] for f in fields]


def _source(s):  # type: ignore[no-untyped-def]
    batch = getattr(s, "batch_source", None)
    return {
        "class": type(s).__name__,
        "path": getattr(s, "path", None),
        "timestamp_field": s.timestamp_field,
        "created_timestamp_column": s.created_timestamp_column,
        "description": s.description,
        "tags": dict(s.tags),
        "owner": s.owner,
        "batch_source": batch.name if batch is not None else None,
        "topic": getattr(getattr(s, "kafka_options", None), "topic", None),
        **({"schema": _fields(s.schema)} if type(s).__name__ == "RequestSource" else {}),
    }


def _odfv(v):  # type: ignore[no-untyped-def]
    """An ODFV as Feast reads it back, with what its function computes on SAMPLE (Feast runs it)."""
    import pandas as pd

    views = [[p.name, p.name_alias, [f.name for f in p.features]] for p in v.source_feature_view_projections.values()]
    requests = sorted(v.source_request_sources)
    sample = {k: vals for k, vals in SAMPLE.items()}
    if v.mode == "python":
        computed = v.feature_transformation.udf(sample)
    else:
        computed = v.feature_transformation.udf(pd.DataFrame(sample)).to_dict(orient="list")
    return {
        "features": _fields(v.features),
        "views": sorted(views),
        "request_sources": requests,
        "mode": v.mode,
        "write_to_online_store": v.write_to_online_store,
        "tags": dict(v.tags),
        "owner": v.owner,
        "description": v.description,
        "computed": {k: list(vals) for k, vals in computed.items()},
    }


#: Inputs every test ODFV's function is run on (Feast's result is compared with Ladle's).
SAMPLE = {"price": [2.0, 4.0], "fx_rate": [0.5, 3.0], "gdp_growth": [1.5, -2.0]}


def _view(v):  # type: ignore[no-untyped-def]
    source = v.stream_source if v.stream_source is not None else v.batch_source
    return {
        "entities": sorted(v.entities),
        "features": _fields(v.features),
        "entity_columns": _fields(v.entity_columns),
        "ttl": v.ttl.total_seconds(),
        "tags": dict(v.tags),
        "owner": v.owner,
        "description": v.description,
        "online": v.online,
        "source": source.name,
        "batch_source_path": v.batch_source.path,
        "timestamp_field": v.batch_source.timestamp_field,
    }


#: The saved dataset made with Feast's own API (a feature service's features, full names, tags).
SAVED = {"name": "macro_training", "path": "data/macro_training.parquet", "tags": {"team": "macro", "use": "train"}}


def _cell(value):  # type: ignore[no-untyped-def]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return None if isinstance(value, float) and math.isnan(value) else value  # NaN (a missed join) as null


def _rows(frame):  # type: ignore[no-untyped-def]
    """A frame's rows as JSON-ready records, sorted, timestamps as ISO text."""
    records = []
    for row in frame.to_dict(orient="records"):
        records.append({k: _cell(v) for k, v in row.items()})
    return sorted(records, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def _saved_dataset(store):  # type: ignore[no-untyped-def]
    """Create SAVED with Feast's create_saved_dataset, then read it back through Feast's get_saved_dataset."""
    import warnings
    from datetime import UTC, datetime

    import pandas as pd
    from feast.infra.offline_stores.file_source import SavedDatasetFileStorage

    service = store.get_feature_service("macro_only")
    when = [datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)]
    entity_df = pd.DataFrame({"country_code": ["US", "FR"], "event_timestamp": when})
    job = store.get_historical_features(entity_df=entity_df, features=service, full_feature_names=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "saving dataset is an experimental feature"
        store.create_saved_dataset(
            from_=job,
            name=SAVED["name"],
            storage=SavedDatasetFileStorage(path=SAVED["path"]),
            tags=SAVED["tags"],
            feature_service=service,
        )
    out = {}
    for listed in store.list_saved_datasets():
        dataset = store.get_saved_dataset(listed.name)
        low, high = dataset.min_event_timestamp, dataset.max_event_timestamp
        out[dataset.name] = {
            "features": list(dataset.features),
            "join_keys": list(dataset.join_keys),
            "full_feature_names": dataset.full_feature_names,
            "path": dataset.storage.file_options.uri,
            "tags": dict(dataset.tags),
            "feature_service_name": dataset.feature_service_name,
            "min_event_timestamp": low.isoformat() if low else None,
            "max_event_timestamp": high.isoformat() if high else None,
            "rows": _rows(dataset.to_df()),
        }
    return out


def main() -> None:
    site, repo = sys.argv[1], sys.argv[2]
    sys.path.append(site)
    import os

    os.chdir(repo)
    from feast import FeatureStore
    from feast.cli.cli import cli

    try:
        cli(["apply"], standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    store = FeatureStore(repo_path=repo)
    saved = _saved_dataset(store)
    out = {
        "saved_datasets": saved,
        "entities": {
            e.name: {
                "join_key": e.join_key,
                "value_type": e.value_type.name,
                "description": e.description,
                "tags": dict(e.tags),
                "owner": e.owner,
            }
            for e in store.list_entities()
        },
        "data_sources": {s.name: _source(s) for s in store.list_data_sources()},
        "feature_views": {v.name: _view(v) for v in store.list_feature_views()},
        "stream_feature_views": {
            v.name: {
                **_view(v),
                "aggregations": [
                    [a.column, a.function, a.time_window.total_seconds(), a.name, a.slide_interval.total_seconds()]
                    for a in v.aggregations
                ],
            }
            for v in store.list_stream_feature_views()
        },
        "on_demand_feature_views": {v.name: _odfv(v) for v in store.list_on_demand_feature_views()},
        "feature_services": {
            s.name: {
                "projections": [
                    [p.name, p.name_alias, [f.name for f in p.features], dict(p.join_key_map)]
                    for p in s.feature_view_projections
                ],
                "tags": dict(s.tags),
                "owner": s.owner,
                "description": s.description,
            }
            for s in store.list_feature_services()
        },
        "permissions": {
            p.name: {
                "name_patterns": list(p.name_patterns),
                "actions": sorted(a.name for a in p.actions),
                "roles": sorted(getattr(p.policy, "roles", [])),
                "tags": dict(p.tags),
            }
            for p in store.list_permissions()
        },
    }
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
