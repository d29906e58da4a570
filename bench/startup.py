"""Start-up cost: ``import ladle``, ``ladle --help`` and ``ladle materialize --help``, each in a fresh process.

Start-up is what a user waits for on every CLI call and every notebook kernel, so heavy libraries
(pandas, pyarrow, duckdb, sqlalchemy, rich …) must load only when a command needs them. Each case
runs ``--repeat`` times in a new interpreter; the median wall time is reported, with the heavy
modules the case left loaded (find where the time goes with ``python -X importtime -c 'import ladle'``).

    .venv/bin/python -m bench.startup
    .venv/bin/python -m bench.startup --repeat 21
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from bench.common import emit, median, summarize

HEAVY = ("pandas", "pyarrow", "duckdb", "sqlalchemy", "numpy", "rich", "redis", "grpc", "starlette", "pydantic")

_LOADED = f"import json, sys; print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]), file=sys.stderr)"

CASES: dict[str, list[str]] = {
    "python": ["-c", "pass"],
    "import_ladle": ["-c", f"import ladle; {_LOADED}"],
    "ladle_help": [
        "-c",
        f"import sys; sys.argv = ['ladle', '--help']\nfrom ladle.cli.main import cli\n"
        f"try:\n    cli.main(standalone_mode=False)\nfinally:\n    {_LOADED}",
    ],
    "ladle_materialize_help": [
        "-c",
        f"import sys; sys.argv = ['ladle', 'materialize', '--help']\nfrom ladle.cli.main import cli\n"
        f"try:\n    cli.main(standalone_mode=False)\nfinally:\n    {_LOADED}",
    ],
}


def run_case(args: list[str]) -> tuple[float, list[str]]:
    """Wall seconds of one fresh interpreter running ``args``, and the heavy modules it had loaded."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    loaded: list[str] = json.loads(proc.stderr.strip().splitlines()[-1]) if "[" in proc.stderr else []
    return seconds, loaded


def main(argv: list[str] | None = None) -> int:
    """Run every case ``--repeat`` times and emit one JSON object with the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=11, help="fresh processes per case (median reported)")
    opts = parser.parse_args(argv)
    result: dict[str, Any] = {"workload": "startup", "repeat": opts.repeat, "cases": {}}
    for name, args in CASES.items():
        run_case(args)  # warm the OS file cache and .pyc files
        times: list[float] = []
        loaded: list[str] = []
        for _ in range(opts.repeat):
            seconds, loaded = run_case(args)
            times.append(seconds)
        result["cases"][name] = {"median_s": round(median(times), 4), "wall_s": summarize(times), "heavy": loaded}
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
