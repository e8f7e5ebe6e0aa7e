"""The chaos suite (``make chaos``): workers stopped, restarted and killed while input
arrives; every row checked against a clean run. See docs/operations.md."""
