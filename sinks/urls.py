"""Passwords in connection URLs: split out, or masked, before a URL is shown anywhere.

No dependencies beyond the standard library: settings use it the moment they are read.
"""

from __future__ import annotations

from urllib.parse import unquote


def split_password(url: str) -> tuple[str, str | None]:
    """``scheme://user:pw@rest`` → (``scheme://user@rest``, ``pw``), the password
    percent-decoded; (url, None) when the URL holds no password.

    The user information ends at the last ``@`` (as a browser reads it), so a password
    holding ``/``, ``#`` or ``@`` unescaped is still found, and never left in the URL.
    Works on any scheme, a mistyped one included, so even the error about it is clean.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    at = rest.rfind("@")
    if at < 0:
        return url, None
    user, colon, password = rest[:at].partition(":")
    if not colon:
        return url, None
    prefix = f"{head}://" if sep else ""
    return f"{prefix}{user}@{rest[at + 1 :]}", unquote(password)


def redact_url(url: str) -> str:
    """The URL with its password, if any, shown as ``***``: for messages and logs."""
    bare, password = split_password(url)
    return url if password is None else with_password_mark(bare, True)


def with_password_mark(url: str, has_password: bool) -> str:
    """``scheme://user@rest`` → ``scheme://user:***@rest`` when ``has_password`` (a URL
    naming no user stays as it is)."""
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    prefix = f"{head}://" if sep else ""
    at = rest.rfind("@")
    if not has_password or at < 0:
        return url
    return f"{prefix}{rest[:at]}:***@{rest[at + 1 :]}"
