"""``python -m cxpulse.streams.cli``: the same as the ``cxpulse`` command."""

from cxpulse.streams.cli import main

main()
