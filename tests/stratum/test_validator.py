"""The share validator against an independent header construction, and session fuzzing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otedama.chain.hashing import scrypt_pow, sha256d
from otedama.chain.merkle import root_from_branch
from otedama.chain.serialize import BlockHeader
from otedama.stratum.codec import encode_request
from otedama.stratum.errors import BAD_NONCE, BAD_NTIME, BAD_VERSION
from otedama.stratum.jobs import Job
from otedama.stratum.validator import ShareValidator

from .conftest import START_TIME, Stack

JOB = Job.create(
    job_id="1",
    seq=1,
    prev_hash=bytes(range(32)),
    version=0x20000000,
    bits=0x207FFFFF,
    ntime=START_TIME,
    mintime=START_TIME - 600,
    height=300,
    coinb1=bytes.fromhex(
        "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20022c010c"
    ),
    coinb2=bytes.fromhex("0a2f6f746564616d612fffffffff0100f2052a010000000451010101" + "00000000"),
    branch=[sha256d(b"a"), sha256d(b"b")],
    transactions=(),
    witness=False,
    clean=True,
)
MASK = 0x1FFFE000


@settings(max_examples=200, deadline=None)
@given(
    extranonce1=st.binary(min_size=4, max_size=4),
    extranonce2=st.binary(min_size=8, max_size=8),
    ntime=st.integers(START_TIME - 600, START_TIME + 7000),
    nonce=st.integers(0, 0xFFFFFFFF),
    bits=st.integers(0, 0xFFFFFFFF).map(lambda b: b & MASK),
)
def test_the_rebuilt_header_matches_an_independent_construction(
    extranonce1: bytes, extranonce2: bytes, ntime: int, nonce: int, bits: int
) -> None:
    JOB.seen.clear()
    checked = ShareValidator(8).check(
        JOB,
        False,
        extranonce1,
        extranonce2.hex(),
        f"{ntime:08x}",
        f"{nonce:08x}",
        f"{bits:08x}",
        MASK,
        1 << 256,
        START_TIME,
        JOB.prev_hash,
    )
    assert checked.reject is None
    coinbase = JOB.coinb1 + extranonce1 + extranonce2 + JOB.coinb2
    header = BlockHeader(
        version=(JOB.version & ~MASK) | bits,
        prev_hash=JOB.prev_hash,
        merkle_root=root_from_branch(sha256d(coinbase), JOB.branch),
        time=ntime,
        bits=JOB.bits,
        nonce=nonce,
    )
    assert checked.header == header.serialize()
    assert checked.pow_hash == header.hash()


@pytest.mark.parametrize(
    ("ntime", "nonce", "version", "reject"),
    [
        ("0x123456", "00000000", None, BAD_NTIME),
        (" 6b05021", "00000000", None, BAD_NTIME),
        ("6b050214", "0000 000", None, BAD_NONCE),
        ("6b050214", "00000000", "-1", BAD_VERSION),
        ("6b050214", "00000000", "123456789", BAD_VERSION),
        ("6b050214", "00000000", " 2000", BAD_VERSION),
    ],
)
def test_malformed_hex_fields_are_refused(
    ntime: str, nonce: str, version: str | None, reject: Any
) -> None:
    checked = ShareValidator(8).check(
        JOB, False, bytes(4), "00" * 8, ntime, nonce, version, MASK, 1 << 256, START_TIME, None
    )
    assert checked.reject is reject


def test_scrypt_shares_are_judged_by_the_scrypt_hash() -> None:
    checked = ShareValidator(8, algorithm="scrypt").check(
        JOB,
        False,
        bytes(4),
        "00" * 8,
        f"{START_TIME:08x}",
        "00000001",
        None,
        0,
        1 << 256,
        START_TIME,
        None,
    )
    assert checked.pow_hash == scrypt_pow(checked.header)
    assert checked.pow_hash != sha256d(checked.header)


def test_unknown_algorithms_and_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="x11"):
        ShareValidator(8, algorithm="x11")
    with pytest.raises(ValueError, match="extranonce2"):
        ShareValidator(0)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
_methods = st.sampled_from(
    [
        "mining.subscribe",
        "mining.authorize",
        "mining.configure",
        "mining.suggest_difficulty",
        "mining.extranonce.subscribe",
        "mining.submit",
        "mining.multi_version",
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    requests=st.lists(
        st.one_of(
            st.tuples(_methods, st.lists(_json_values, max_size=7)).map(
                lambda r: encode_request(1, r[0], r[1])
            ),
            st.binary(max_size=60).map(lambda b: b + b"\n"),
        ),
        max_size=12,
    )
)
def test_arbitrary_input_never_breaks_a_session(stack: Stack, requests: list[bytes]) -> None:
    miner = stack.miner(port=len(stack.server.sessions) + 1)
    for data in requests:
        miner.send_raw(data)
    for line in miner.read():
        assert line["id"] is None or line["id"] == 1 or line.get("method") is not None
        assert set(line) in ({"id", "result", "error"}, {"id", "method", "params"})
    if not miner.closed:
        reply = miner.call("mining.subscribe", [])
        assert reply["error"] is None
    miner.disconnect()
    json.dumps(stack.server.stats.rejected)
