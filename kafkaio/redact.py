"""Secrets out of every text that leaves a process: log lines (message, exception and traceback), CLI
errors, reports.

Two guards, because code must never print a secret in the first place and sometimes a library does:
- the values of the secrets this process was given (API keys, tokens, passwords) are replaced wherever
  they appear;
- credentials in any connection string are masked by their form, known or not: the password of a URL's
  user part (``scheme://user:***@host``), password-like query parameters (``?password=***``,
  ``sslpassword``, ``token``, ``apiKey``...), ``key=value`` DSNs (``password=***``, quoted or not),
  librdkafka's ``sasl.password`` / ``ssl.key.password``, and HTTP ``Bearer``/``Basic`` credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_KEYS = r"password|passwd|pwd|sslpassword|sslkey_password|pass|secret|token|access_token|api_key|apikey|apiKey|key"
_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@'\"]*:)(?P<secret>[^@\s/'\"]+)(?=@)")
_QUERY = re.compile(rf"(?P<head>[?&;](?:{_KEYS})=)(?P<secret>[^&\s'\"#]+)", re.IGNORECASE)
_KEY_VALUE = re.compile(
    r"(?P<head>\b(?:password|sslpassword|sasl\.password|ssl\.key\.password|basic\.auth\.user\.info)"
    r"['\"]?\s*[=:]\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;}&]+)",
    re.IGNORECASE,
)
_HTTP_AUTH = re.compile(r"(?P<head>\b(?:Bearer|Basic)\s+)(?P<secret>[A-Za-z0-9._~+/=-]{6,})")
_FORMS = (_URL_USERINFO, _QUERY, _KEY_VALUE, _HTTP_AUTH)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every given secret value, and every credential in a recognisable form, masked."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, MASK)
    for form in _FORMS:
        text = form.sub(lambda m: m.group("head") + MASK, text)
    return text


def redact_url(url: str) -> str:
    """A connection string (URL or ``key=value`` DSN) safe for logs and errors."""
    return redact_text(url)


class Redactor:
    """:func:`redact_text` with the secrets of this process (more can be added as they become known)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= 4)

    def __call__(self, text: str) -> str:
        return redact_text(text, self.secrets)
