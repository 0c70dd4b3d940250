"""Keep secrets out of logs: known secret values plus the shapes of tokens, SAS and keys.

``redact(text)`` is applied by the logging filter the CLI installs and by every place that
renders an error message, so a SAS URL in an exception still prints masked.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

_PATTERNS: tuple[re.Pattern[str], ...] = (
    # SAS query parameters: the signature is the secret, keep the rest readable.
    re.compile(r"(?i)(\bsig=)[^&\s\"']+"),
    # Bearer tokens and bare JWTs.
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-_.=+/]+"),
    re.compile(r"()\beyJ[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*"),
    # Connection-string keys and account keys.
    re.compile(r"(?i)(\bAccountKey=)[^;\s\"']+"),
    re.compile(r"(?i)(\bSharedAccessSignature=)[^;\s\"']+"),
    re.compile(r"(?i)(\"?(?:access_token|accessToken|client_secret|password)\"?\s*[:=]\s*\"?)[^\"',\s}]+"),
    # The sandbox's secret, as `sandbox env` exports it and as its control header carries it.
    re.compile(r"(?i)(\b(?:CICD_SANDBOX_SECRET|X-Cicd-Sandbox-Secret)[\"']?\s*[:=]\s*[\"']?)[^\"',\s}]+"),
)


def register_secret(value: str) -> None:
    """Remember a value that must never appear in a log (ignored when too short to be a secret)."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with registered secrets and secret-shaped substrings masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the fully formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg = masked
            record.args = None
        return True
