"""Hatchling build hook: compile Ladle's optional C accelerator, ``ladle.online.redis._cluster_plan``.

The module is one C file with no dependency beyond Python's headers. It is built with the C compiler
Python itself was built with (``sysconfig``'s ``CC`` / ``LDSHARED``); where there is none, or the
build fails, or ``LADLE_NO_NATIVE=1`` is set, the package installs without it and Ladle uses the
pure-Python path it replaces (same results; a cluster read costs ~20 µs more, docs/redis.md).

An editable install (``pip install -e .``, what ``scripts/bootstrap.sh`` does) builds it in place,
next to its source under ``src/``; a wheel gets it as a platform-specific file.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface  # type: ignore[import-not-found]
except ImportError:  # imported outside a build, for compile_extension (tests/unit/test_cluster_plan_native.py)
    BuildHookInterface = object

SOURCE = Path("src/ladle/online/redis/_cluster_plan.c")
PACKAGE_DIR = "ladle/online/redis"


def compile_extension(source: Path, target: Path) -> str | None:
    """Compile ``source`` into the extension module ``target``; the error text if that failed."""
    cc = sysconfig.get_config_var("CC") or "cc"
    ldshared = sysconfig.get_config_var("LDSHARED") or f"{cc} -shared"
    include = sysconfig.get_paths()["include"]
    flags = ["-O2", "-fPIC", "-Wall", "-Wextra", "-Wno-unused-parameter", f"-I{include}"]
    obj = target.with_suffix(".o")
    steps = [
        [*shlex.split(cc), *flags, "-c", str(source), "-o", str(obj)],
        [*shlex.split(ldshared), str(obj), "-o", str(target)],
    ]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                return f"{shlex.join(step)}: {done.stderr.strip() or done.returncode}"
    except OSError as exc:  # no compiler at all
        return str(exc)
    finally:
        obj.unlink(missing_ok=True)
    return None


class NativeBuildHook(BuildHookInterface):  # type: ignore[misc]
    """Builds the accelerator when it can; never fails the install (the pure-Python path remains)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile ``_cluster_plan`` for this wheel (or in place for an editable install)."""
        if self.target_name != "wheel" or os.environ.get("LADLE_NO_NATIVE") == "1":
            return  # an sdist ships the C source, never a built module
        source = Path(self.root) / SOURCE
        name = "_cluster_plan" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
        if version == "editable":
            target = source.parent / name
        else:
            target = Path(tempfile.mkdtemp(prefix="ladle-native-")) / name
        error = compile_extension(source, target)
        if error is not None:
            print(f"ladle: the C accelerator was not built, using pure Python ({error})", file=sys.stderr)
            return
        if version != "editable":
            build_data["force_include"][str(target)] = f"{PACKAGE_DIR}/{name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
