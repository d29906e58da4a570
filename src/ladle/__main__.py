"""``python -m ladle``: the same as the ``ladle`` command."""

from ladle.cli.main import main

main()
