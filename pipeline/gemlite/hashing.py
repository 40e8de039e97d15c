"""Id hashing `fmix32x2-v1`, the Python twin of src/features/id-hash.ts.

hashId(id, salt, buckets) -> 1..buckets-1 (0 is padding). Ids are non-negative integers <= 2^53-1;
they are split into 32-bit halves and mixed with murmur3's fmix32 in uint32 arithmetic.
Both twins are tested against schemas/hash-vectors.json.
"""
from __future__ import annotations

import numpy as np

HASH_FUNCTION = "fmix32x2-v1"
_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9
_C1 = 0x85EBCA6B
_C2 = 0xC2B2AE35


def _fmix32_np(h: np.ndarray) -> np.ndarray:
    h = h.astype(np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(_C1)
    h ^= h >> np.uint32(13)
    h *= np.uint32(_C2)
    h ^= h >> np.uint32(16)
    return h


def fmix32(value: int) -> int:
    h = value & _M32
    h ^= h >> 16
    h = (h * _C1) & _M32
    h ^= h >> 13
    h = (h * _C2) & _M32
    h ^= h >> 16
    return h


def hash_id(id_: int, salt: int, buckets: int) -> int:
    """Scalar reference implementation."""
    if buckets < 2:
        raise ValueError("buckets must be >= 2")
    lo = id_ & _M32
    hi = id_ >> 32
    h = fmix32(lo ^ (salt & _M32))
    h = fmix32(h ^ (((hi ^ _GOLDEN) * _C1) & _M32))
    return 1 + h % (buckets - 1)


def hash_ids(ids: np.ndarray, salt: int, buckets: int) -> np.ndarray:
    """Vectorised hash of an int64 id array; returns int64 indices in 1..buckets-1."""
    if buckets < 2:
        raise ValueError("buckets must be >= 2")
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError("ids must be non-negative")
    u = ids.astype(np.uint64)
    lo = (u & np.uint64(_M32)).astype(np.uint32)
    hi = (u >> np.uint64(32)).astype(np.uint32)
    with np.errstate(over="ignore"):
        h = _fmix32_np(lo ^ np.uint32(salt & _M32))
        mixed = (hi ^ np.uint32(_GOLDEN)) * np.uint32(_C1)
        h = _fmix32_np(h ^ mixed)
    return (1 + (h.astype(np.int64) % (buckets - 1))).astype(np.int64)


def hash_string(text: str) -> int:
    """FNV-1a over UTF-16 code units, then fmix32 (twin of hashString in id-hash.ts)."""
    h = 0x811C9DC5
    data = text.encode("utf-16-le")
    for i in range(0, len(data), 2):
        h ^= data[i] | (data[i + 1] << 8)
        h = (h * 0x01000193) & _M32
    return fmix32(h)
