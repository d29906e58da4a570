"""``python -m ladle.feast_compat [PATH]``: write the compatibility page (default docs/feast-compat.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from ladle.feast_compat import render


def main() -> None:
    """Write the page."""
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/feast-compat.md")
    target.write_text(render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
