"""Fuzzing the parsers of outside input: zero crashes, zero hangs.

The suite replays every kept input of each target's corpus (``corpus/<target>/``) and
runs a short hypothesis search per target. Longer runs are by hand: set
``OTEDAMA_FUZZ_EXAMPLES`` (hypothesis examples per target, default 150), or run atheris
with ``python tests/fuzz/run_atheris.py TARGET``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from harness import FuzzFailure, Target, check, corpus_inputs, replay_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from targets import CORPUS, TARGETS
from twisted.logger import Logger

EXAMPLES = int(os.environ.get("OTEDAMA_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # hangs are bounded by the harness's own deadline
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_kept_input_is_handled_without_a_crash(name: str) -> None:
    assert replay_corpus(TARGETS[name], CORPUS / name) == len(corpus_inputs(CORPUS / name)) > 0


# -- structured inputs -----------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
hexes = st.binary(max_size=12).map(bytes.hex)
stratum_methods = st.sampled_from(
    [
        "mining.subscribe",
        "mining.authorize",
        "mining.submit",
        "mining.configure",
        "mining.suggest_difficulty",
        "mining.extranonce.subscribe",
        "mining.get_transactions",
        "client.get_version",
        "mining.ping",
    ]
)
stratum_params = st.lists(json_scalars | hexes | json_values, max_size=6)


@st.composite
def stratum_lines(draw: Any) -> bytes:
    lines = draw(
        st.lists(
            st.fixed_dictionaries(
                {"id": st.integers(0, 2**40) | st.text(max_size=8) | st.none()},
                optional={"method": stratum_methods, "params": stratum_params},
            ),
            min_size=1,
            max_size=6,
        )
    )
    prefix = draw(st.sampled_from([b"\x00", b"\x01"]))  # odd: after subscribe + authorize
    noise = draw(st.binary(max_size=20))
    return prefix + b"".join(json.dumps(line).encode() + b"\n" for line in lines) + noise


@given(data=stratum_lines() | st.binary(max_size=2000))
@FUZZ
def test_the_stratum_codec_survives_any_bytes(data: bytes) -> None:
    check(TARGETS["stratum_codec"], data)


@given(data=stratum_lines() | st.binary(max_size=2000))
@FUZZ
def test_a_stratum_session_survives_any_miner_input(data: bytes) -> None:
    check(TARGETS["stratum_session"], data)


CONFIG_SECTIONS = ("app", "server", "stratum", "pool", "chain", "database", "redis", "mining")


def production_config() -> dict[str, Any]:
    import yaml

    root = Path(__file__).resolve().parents[2]
    loaded: dict[str, Any] = yaml.safe_load((root / "etc" / "production.yaml").read_text())
    return loaded


@st.composite
def config_mappings(draw: Any) -> bytes:
    """The production config with some values replaced by anything JSON can say."""
    config = production_config()
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(sorted(config)))
        value = config[section]
        if isinstance(value, dict) and value and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(value)))
            value[key] = draw(json_values)
        else:
            config[section] = draw(json_values)
    if draw(st.booleans()):
        config[draw(st.sampled_from(CONFIG_SECTIONS))] = draw(json_values)
    return json.dumps(config).encode()


@given(data=config_mappings())
@FUZZ
def test_the_config_loader_accepts_or_lists_problems_for_any_values(data: bytes) -> None:
    check(TARGETS["config_data"], data)


@given(data=st.binary(max_size=500) | st.text(max_size=300).map(str.encode))
@FUZZ
def test_the_config_loader_accepts_or_lists_problems_for_any_file(data: bytes) -> None:
    check(TARGETS["config_file"], data)


@st.composite
def rpc_bodies(draw: Any) -> bytes:
    status = draw(st.binary(min_size=1, max_size=1))
    reply = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "result": json_values,
                "error": json_values
                | st.fixed_dictionaries({"code": json_scalars, "message": json_scalars}),
                "id": json_scalars,
            },
        )
    )
    return status + json.dumps(reply).encode()


@given(data=rpc_bodies() | st.binary(max_size=1000))
@FUZZ
def test_the_rpc_reply_parser_answers_or_refuses_any_reply(data: bytes) -> None:
    check(TARGETS["rpc_reply"], data)


def real_template() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    vectors = json.loads((root / "tests/vectors/bitcoind/templates-with-txs.json").read_text())
    template: dict[str, Any] = vectors["cases"][0]["getblocktemplate"]
    return template


@st.composite
def template_replies(draw: Any) -> bytes:
    """A real template with some fields replaced or removed."""
    template = real_template()
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(template)))
        if draw(st.booleans()):
            template[key] = draw(json_values | hexes)
        else:
            del template[key]
    return json.dumps({"result": template, "error": None, "id": 1}).encode()


@given(data=template_replies())
@FUZZ
def test_the_template_parser_accepts_or_refuses_any_template(data: bytes) -> None:
    check(TARGETS["block_template"], data)


# -- the harness itself ----------------------------------------------------------------


def test_the_harness_reports_a_crash_with_its_input() -> None:
    def crashes(data: bytes) -> None:
        raise KeyError(data)

    with pytest.raises(FuzzFailure, match="KeyError") as caught:
        check(Target("crashes", crashes, (ValueError,)), b"boom")
    assert caught.value.data == b"boom"


def test_the_harness_accepts_a_clean_refusal() -> None:
    def refuses(data: bytes) -> None:
        raise ValueError("no")

    check(Target("refuses", refuses, (ValueError,)), b"x")


def test_the_harness_reports_a_hang() -> None:
    def hangs(data: bytes) -> None:
        time.sleep(60)

    with pytest.raises(FuzzFailure, match="no answer within"):
        check(Target("hangs", hangs, deadline=0.1), b"")


def test_the_harness_reports_a_failure_a_handler_logged_and_swallowed() -> None:
    log = Logger()

    def swallows(data: bytes) -> None:
        try:
            raise RuntimeError("inside")
        except RuntimeError:
            log.failure("handler failed")

    with pytest.raises(FuzzFailure, match="logged failure RuntimeError"):
        check(Target("swallows", swallows), b"")


def test_the_deadline_puts_back_an_outer_alarm() -> None:
    import signal

    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 1000.0)
    try:
        check(Target("quick", lambda data: None), b"")
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < remaining <= 1000.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert fired == []
