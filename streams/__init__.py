"""The worker and everything around it (docs/architecture.md, "Layout")."""

from cxpulse.native import use_fresh

use_fresh()  # never a compiled core older than its source (cxpulse/native.py)
