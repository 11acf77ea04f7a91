"""The exceptions of :mod:`warden`: everything the package raises is a :class:`WardenError`.

Messages come from the Rust client (``warden-client``) with every string the server sent escaped,
so a message prints as one the package wrote.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = [
    "WardenError",
    "AuthError",
    "ConfigError",
    "InputError",
    "PinMismatch",
    "Rejected",
    "ServerError",
    "VerificationError",
    "WaitTimeout",
]


class WardenError(Exception):
    """Base class of every error of this package."""


class AuthError(WardenError):
    """The server refused the login or the request (wrong user name or password, not allowed)."""

    status: Optional[int] = None


class ConfigError(WardenError):
    """The profile, a key, the certificate or the password cannot be used as they are."""


class InputError(WardenError, ValueError):
    """The task as asked for cannot be sent: the input, the image, the organizations named.
    Nothing was sent."""


class PinMismatch(WardenError):
    """An organization's key from the server is not the one pinned for it (or none is pinned).
    Nothing was sent to any organization.

    ``organization`` names it; ``pinned`` is the pinned fingerprint (``None`` when there is no
    pin) and ``got`` the fingerprint of the key the server gave."""

    organization: Optional[str] = None
    organization_id: Optional[int] = None
    pinned: Optional[str] = None
    got: Optional[str] = None


class ServerError(WardenError):
    """The server is unreachable, answered with an error (``status``) or with something
    unexpected."""

    status: Optional[int] = None


class VerificationError(WardenError):
    """What the server shows did not verify: the task is not as it was created, a run reports
    another image digest, or a result does not open with your key or is bound to another run,
    organization, task or image. Nothing of it is returned."""

    task_id: Optional[int] = None
    run_id: Optional[int] = None


class WaitTimeout(WardenError, TimeoutError):
    """Some runs were not final when the wait's timeout passed; wait again."""

    task_id: Optional[int] = None


class Rejected(WardenError):
    """Some runs were rejected by their node or failed. ``reasons`` maps each such organization
    to the node's reason; ``results`` holds every run's outcome, the completed ones' values
    included, so nothing is lost."""

    def __init__(self, message: str, reasons: Optional[Dict[str, Optional[str]]] = None,
                 results: Any = None) -> None:
        super().__init__(message)
        self.reasons: Dict[str, Optional[str]] = dict(reasons or {})
        self.results: Any = results

    @property
    def organizations(self) -> List[str]:
        """The organizations whose run was rejected or failed."""
        return list(self.reasons)
