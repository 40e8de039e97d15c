import json
from pathlib import Path

import numpy as np

from pipeline.gemlite.hashing import HASH_FUNCTION, hash_id, hash_ids, hash_string

VECTORS = Path(__file__).resolve().parents[2] / "schemas" / "hash-vectors.json"


def test_vectors_scalar_and_vectorised():
    spec = json.loads(VECTORS.read_text())
    assert spec["function"] == HASH_FUNCTION
    for case in spec["ids"]:
        assert hash_id(case["id"], case["salt"], case["buckets"]) == case["index"], case
        got = hash_ids(np.array([case["id"]], dtype=np.int64), case["salt"], case["buckets"])
        assert int(got[0]) == case["index"], case
    for case in spec["strings"]:
        assert hash_string(case["text"]) == case["hash"], case


def test_range_and_padding():
    ids = np.arange(0, 100000, dtype=np.int64) * 7919 + 2**40
    out = hash_ids(ids, 12345, 997)
    assert out.min() >= 1 and out.max() <= 996
    assert np.array_equal(out[:50], [hash_id(int(i), 12345, 997) for i in ids[:50]])
