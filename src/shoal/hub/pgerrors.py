"""The one translator from psycopg errors to shoal errors, and secret scrubbing of messages.

Which failures are the hub being unreachable (retryable: the connection broke, the server is
shutting down or out of resources, a call ran past its deadline) and which are the hub refusing
a request (not retried as an outage) is decided here and nowhere else.
"""

from __future__ import annotations

import re

import psycopg

from shoal.errors import FolderKeyProblem, HubError, HubMismatch, HubRowRefused, HubUnreachable, ShoalError


def scrub_secrets(text: str) -> str:
    """Remove anything that looks like a password from a text (conninfo or URL)."""
    text = re.sub(r"(password\s*=\s*)\S+", r"\1***", text, flags=re.I)
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def describe_error(e: BaseException) -> str:
    """The first line of an error's text, secrets removed."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return scrub_secrets(first)


# SQLSTATE classes meaning "the hub is not there right now": connection exceptions, operator
# intervention (shutdown, cancel, timeouts), insufficient resources.
_OUTAGE_CLASSES = ("08", "57", "53")
# The request itself cannot be stored (a value too long for an index, a bound exceeded):
# retrying cannot help, and it must not be mistaken for an outage.
_ROW_REFUSED = {"54000", "22001", "23514", "22023"}


# What a server says when it refuses a login itself (not an outage: retrying will not help).
_LOGIN_REFUSED = ("password authentication failed", "is not permitted to log in", "was revoked",
                  "may not log in", "pg_hba.conf rejects", "no pg_hba.conf entry", "does not exist")


def login_refused(e: psycopg.Error) -> bool:
    """Whether a failed connection is the server refusing this login (wrong or expired password,
    revoked, not allowed), rather than the hub being out of reach."""
    state = getattr(e, "sqlstate", None)
    return (state or "").startswith("28") or any(m in str(e) for m in _LOGIN_REFUSED)


def is_outage(e: psycopg.Error) -> bool:
    state = getattr(e, "sqlstate", None)
    if state is None:
        return isinstance(e, psycopg.OperationalError)
    return state.startswith(_OUTAGE_CLASSES) and state not in _ROW_REFUSED


def translate(e: psycopg.Error, what: str) -> ShoalError:
    """The shoal error for a psycopg error raised during `what` (e.g. "push")."""
    state = getattr(e, "sqlstate", None)
    if is_outage(e):
        return HubUnreachable(f"hub unreachable during {what}: {describe_error(e)}")
    if isinstance(e, psycopg.errors.UniqueViolation):
        return HubMismatch(f"hub refused {what}: {describe_error(e)}")
    if state == "SQ002":  # an encrypted folder and a row (or key) that does not fit it
        return FolderKeyProblem(describe_error(e))
    if state in _ROW_REFUSED:
        return HubRowRefused(f"hub refused {what}: {describe_error(e)}")
    return HubError(f"hub refused {what}: {describe_error(e)}")
