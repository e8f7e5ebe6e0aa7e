"""Analyses of what the worker stored: read-only questions asked of ClickHouse's rows."""
