"""Stratum V1 error codes and the errors the server sends.

Error replies use ckpool's array form ``[code, "message", null]``. The codes are the
de-facto Stratum V1 set (slush's draft, used by ckpool, cgminer and most miners).
"""

from __future__ import annotations

import json

__all__ = [
    "ERR_DUPLICATE",
    "ERR_JOB_NOT_FOUND",
    "ERR_LOW_DIFFICULTY",
    "ERR_NOT_SUBSCRIBED",
    "ERR_OTHER",
    "ERR_UNAUTHORIZED",
    "InvalidParams",
    "Reject",
    "StratumError",
]
# The fixed share rejections (module constants below): BAD_EXTRANONCE2, BAD_NONCE,
# BAD_NTIME, BAD_VERSION, DUPLICATE, JOB_NOT_FOUND, LOW_DIFFICULTY, NOT_SUBSCRIBED, STALE,
# RATE_LIMITED, UNAUTHORIZED, WORKER_MISMATCH.

ERR_OTHER = 20
ERR_JOB_NOT_FOUND = 21
ERR_DUPLICATE = 22
ERR_LOW_DIFFICULTY = 23
ERR_UNAUTHORIZED = 24
ERR_NOT_SUBSCRIBED = 25


class StratumError(Exception):
    """A request the server refuses; becomes an error reply ``[code, message, null]``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"StratumError({self.code}, {self.message!r})"


class InvalidParams(StratumError):
    """A request whose params have the wrong shape or types (counts towards abuse)."""

    def __init__(self, message: str) -> None:
        super().__init__(ERR_OTHER, message)


class Reject:
    """The fixed share rejections, each with its error array encoded once.

    ``STALE.array`` is the JSON bytes ``[21,"Stale",null]`` so a rejected submit
    costs no ``json.dumps``.
    """

    __slots__ = ("array", "code", "message")

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        self.array = json.dumps([code, message, None], separators=(",", ":")).encode()

    def __repr__(self) -> str:
        return f"Reject({self.code}, {self.message!r})"


JOB_NOT_FOUND = Reject(ERR_JOB_NOT_FOUND, "Invalid JobID")
STALE = Reject(ERR_JOB_NOT_FOUND, "Stale")
DUPLICATE = Reject(ERR_DUPLICATE, "Duplicate")
LOW_DIFFICULTY = Reject(ERR_LOW_DIFFICULTY, "Above target")
BAD_VERSION = Reject(ERR_OTHER, "Invalid version mask")
BAD_EXTRANONCE2 = Reject(ERR_OTHER, "Invalid extranonce2 length")
BAD_NTIME = Reject(ERR_OTHER, "Ntime out of range")
BAD_NONCE = Reject(ERR_OTHER, "Invalid nonce")
NOT_SUBSCRIBED = Reject(ERR_NOT_SUBSCRIBED, "Not subscribed")
UNAUTHORIZED = Reject(ERR_UNAUTHORIZED, "Unauthorized worker")
WORKER_MISMATCH = Reject(ERR_OTHER, "Worker mismatch")
RATE_LIMITED = Reject(ERR_OTHER, "Too many shares, slow down")
