"""Hash functions used by Bitcoin-style chains: SHA-256, double SHA-256, HASH160, scrypt PoW."""

from __future__ import annotations

import hashlib

__all__ = ["hash160", "scrypt_pow", "sha256", "sha256d"]


def sha256(data: bytes) -> bytes:
    """Single SHA-256 of ``data``."""
    return hashlib.sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    """Double SHA-256 (``SHA256(SHA256(data))``), the hash of headers, txids and merkle nodes."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD-160 of SHA-256, the hash behind P2PKH/P2SH/P2WPKH addresses."""
    return _ripemd160(hashlib.sha256(data).digest())


def scrypt_pow(header80: bytes) -> bytes:
    """Litecoin-style scrypt proof-of-work hash of an 80-byte header (N=1024, r=1, p=1).

    The header is both the password and the salt; the 32-byte result is in internal
    (little-endian number) byte order like ``sha256d``.
    """
    if len(header80) != 80:
        raise ValueError(f"scrypt_pow needs an 80-byte header, got {len(header80)} bytes")
    return hashlib.scrypt(header80, salt=header80, n=1024, r=1, p=1, dklen=32)


def _ripemd160(data: bytes) -> bytes:
    """RIPEMD-160, from hashlib when OpenSSL offers it, else the pure-Python version."""
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:
        return _ripemd160_pure(data)


# Pure-Python RIPEMD-160 (OpenSSL 3 moves ripemd160 to the legacy provider, so hashlib may
# lack it). Constants and round structure from the RIPEMD-160 specification.
_RL = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    (7, 4, 13, 1, 10, 6, 15, 3, 12, 0, 9, 5, 2, 14, 11, 8),
    (3, 10, 14, 4, 9, 15, 8, 1, 2, 7, 0, 6, 13, 11, 5, 12),
    (1, 9, 11, 10, 0, 8, 12, 4, 13, 3, 7, 15, 14, 5, 6, 2),
    (4, 0, 5, 9, 7, 12, 2, 10, 14, 1, 3, 8, 11, 6, 15, 13),
)
_RR = (
    (5, 14, 7, 0, 9, 2, 11, 4, 13, 6, 15, 8, 1, 10, 3, 12),
    (6, 11, 3, 7, 0, 13, 5, 10, 14, 15, 8, 12, 4, 9, 1, 2),
    (15, 5, 1, 3, 7, 14, 6, 9, 11, 8, 12, 2, 10, 0, 4, 13),
    (8, 6, 4, 1, 3, 11, 15, 0, 5, 12, 2, 13, 9, 7, 10, 14),
    (12, 15, 10, 4, 1, 5, 8, 7, 6, 2, 13, 14, 0, 3, 9, 11),
)
_SL = (
    (11, 14, 15, 12, 5, 8, 7, 9, 11, 13, 14, 15, 6, 7, 9, 8),
    (7, 6, 8, 13, 11, 9, 7, 15, 7, 12, 15, 9, 11, 7, 13, 12),
    (11, 13, 6, 7, 14, 9, 13, 15, 14, 8, 13, 6, 5, 12, 7, 5),
    (11, 12, 14, 15, 14, 15, 9, 8, 9, 14, 5, 6, 8, 6, 5, 12),
    (9, 15, 5, 11, 6, 8, 13, 12, 5, 12, 13, 14, 11, 8, 5, 6),
)
_SR = (
    (8, 9, 9, 11, 13, 15, 15, 5, 7, 7, 8, 11, 14, 14, 12, 6),
    (9, 13, 15, 7, 12, 8, 9, 11, 7, 7, 12, 7, 6, 15, 13, 11),
    (9, 7, 15, 11, 8, 6, 6, 14, 12, 13, 5, 14, 13, 13, 7, 5),
    (15, 5, 8, 11, 14, 14, 6, 14, 6, 9, 12, 9, 12, 5, 15, 8),
    (8, 5, 12, 9, 12, 5, 14, 6, 8, 13, 6, 5, 15, 13, 11, 11),
)
_KL = (0x00000000, 0x5A827999, 0x6ED9EBA1, 0x8F1BBCDC, 0xA953FD4E)
_KR = (0x50A28BE6, 0x5C4DD124, 0x6D703EF3, 0x7A6D76E9, 0x00000000)
_MASK = 0xFFFFFFFF


def _f(j: int, x: int, y: int, z: int) -> int:
    if j == 0:
        return x ^ y ^ z
    if j == 1:
        return (x & y) | (~x & z)
    if j == 2:
        return (x | ~y) ^ z
    if j == 3:
        return (x & z) | (y & ~z)
    return x ^ (y | ~z)


def _rol(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


def _ripemd160_pure(data: bytes) -> bytes:
    h = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0]
    msg = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + (8 * len(data)).to_bytes(8, "little")
    for start in range(0, len(msg), 64):
        x = [int.from_bytes(msg[start + 4 * i : start + 4 * i + 4], "little") for i in range(16)]
        al, bl, cl, dl, el = h
        ar, br, cr, dr, er = h
        for rnd in range(5):
            for i in range(16):
                t = _rol(
                    (al + _f(rnd, bl, cl, dl) + x[_RL[rnd][i]] + _KL[rnd]) & _MASK, _SL[rnd][i]
                )
                al, bl, cl, dl, el = el, (t + el) & _MASK, bl, _rol(cl, 10), dl
                t = _rol(
                    (ar + _f(4 - rnd, br, cr, dr) + x[_RR[rnd][i]] + _KR[rnd]) & _MASK, _SR[rnd][i]
                )
                ar, br, cr, dr, er = er, (t + er) & _MASK, br, _rol(cr, 10), dr
        t = (h[1] + cl + dr) & _MASK
        h[1] = (h[2] + dl + er) & _MASK
        h[2] = (h[3] + el + ar) & _MASK
        h[3] = (h[4] + al + br) & _MASK
        h[4] = (h[0] + bl + cr) & _MASK
        h[0] = t
    return b"".join(v.to_bytes(4, "little") for v in h)
