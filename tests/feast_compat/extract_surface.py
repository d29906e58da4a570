"""Extract Feast's public surface by introspection; run with the Python of a venv that has Feast.

    ~/.cache/ladle/feast-venv-0.67.0/bin/python tests/feast_compat/extract_surface.py \
        > src/ladle/feast_compat/surface.json

It prints JSON: Feast's version, its public definition classes (``feast.__all__`` classes other
than the store and the config), the public methods of ``FeatureStore`` with their parameter names,
every CLI verb (``feast`` command paths) and every route of the Python feature server. This file
never imports Ladle, and Ladle never imports it: it runs only in Feast's own environment.
With a JSON list of message names as argument it prints ``{"surface": ..., "descriptors": ...,
"yaml_keys": ...}`` (each message's fields; the top-level ``feature_store.yaml`` keys) instead, for the tests.
"""

import inspect
import json
import re
import sys
import tempfile
from pathlib import Path


def _definitions(feast):  # type: ignore[no-untyped-def]
    out = []
    for name in sorted(feast.__all__):
        obj = getattr(feast, name, None)
        if inspect.isclass(obj) and name not in {"FeatureStore", "RepoConfig"}:
            out.append(name)
    return out


def _methods(feast):  # type: ignore[no-untyped-def]
    out = {}
    for name, member in sorted(vars(feast.FeatureStore).items()):
        if name.startswith("_"):
            continue
        fn = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        if isinstance(member, property):
            out[name] = {"kind": "property", "params": []}
            continue
        if not callable(fn):
            continue
        params = [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
        out[name] = {"kind": "method", "params": params}
    return out


def _verbs(group, prefix=""):  # type: ignore[no-untyped-def]
    import click

    out = []
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        path = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            out.extend(_verbs(command, path))
        else:
            out.append(path)
    return out


def _routes():  # type: ignore[no-untyped-def]
    import feast.feature_server as server

    source = inspect.getsource(server)
    found = set()
    for method, path in re.findall(r"@app\.(get|post|put|delete|websocket)\(\s*[\"']([^\"']+)[\"']", source):
        found.add(f"{method.upper()} {path}")
    return sorted(found)


def _descriptors(names):  # type: ignore[no-untyped-def]
    import feast.protos.feast.core.Registry_pb2  # noqa: F401 - registers every core message
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    out = {}
    for name in names:
        found = pool.FindMessageTypeByName(name)
        out[name] = {f.name: [f.number, f.type, f.is_repeated] for f in found.fields}
    return out


def main() -> None:
    import feast
    from feast.cli.cli import cli

    surface = {
        "feast_version": feast.__version__,
        "definitions": _definitions(feast),
        "sdk_methods": _methods(feast),
        "cli_verbs": _verbs(cli),
        "server_routes": _routes(),
    }
    if len(sys.argv) > 1:  # the tests also ask for protobuf descriptors, to save starting Feast twice
        from feast.repo_config import RepoConfig

        keys = sorted(f.alias or name for name, f in RepoConfig.model_fields.items() if name != "repo_path")
        surface = {"surface": surface, "descriptors": _descriptors(json.loads(sys.argv[1])), "yaml_keys": keys}
    json.dump(surface, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    tempfile.tempdir = tempfile.mkdtemp()
    sys.path = [p for p in sys.path if Path(p).resolve() != Path(__file__).resolve().parent]
    main()
