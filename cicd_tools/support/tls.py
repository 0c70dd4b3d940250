"""TLS trust failures said as what they are: a missing CA bundle, not "the network".

A shell that points at the local sandbox (``CICD_SANDBOX_STATE_DIR`` is exported by ``sandbox env``) but lost
``REQUESTS_CA_BUNDLE`` fails every HTTPS call with CERTIFICATE_VERIFY_FAILED; retrying cannot heal that, so it is
refused at once with the command that fixes it. A certificate failure anywhere else is not retried either.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

from cicd_tools.support.errors import ConfigError

SANDBOX_FIX = 'Re-run eval "$(cicd-tools sandbox env)" (add --state-dir DIR if the sandbox runs elsewhere).'
GENERAL_FIX = ("Set REQUESTS_CA_BUNDLE to the CA bundle that signs the endpoint's certificate (a TLS-inspecting"
               " proxy needs its own CA in it).")


def sandbox_ca_missing(env: Mapping[str, str]) -> ConfigError | None:
    """The error for a sandbox shell without the sandbox's CA bundle; None when the shell is consistent."""
    state = env.get("CICD_SANDBOX_STATE_DIR")
    if not state or env.get("REQUESTS_CA_BUNDLE"):
        return None
    return ConfigError(f"this shell points at the sandbox ({state}) but REQUESTS_CA_BUNDLE is not set, so no HTTPS"
                       " call to it can be trusted", code="SandboxCaNotTrusted", hint=SANDBOX_FIX)


def require_sandbox_ca(env: Mapping[str, str]) -> None:
    """Raises: ConfigError (before any call is made) when the sandbox's CA bundle is missing from the shell."""
    error = sandbox_ca_missing(env)
    if error is not None:
        raise error


def is_certificate_failure(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) is a certificate verification failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = getattr(current, "inner_exception", None) or current.__cause__ or current.__context__
    return False


def certificate_fix(env: Mapping[str, str]) -> str:
    """What to do about a certificate failure in this shell."""
    return SANDBOX_FIX if env.get("CICD_SANDBOX_STATE_DIR") else GENERAL_FIX
