"""Log observers: JSON lines, text, level changes live, file rotation by size."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from twisted.logger import Logger, LogPublisher

from otedama.configschema import size
from otedama.ops.logging import LogControl


def publisher_for(control: LogControl) -> Logger:
    publisher = LogPublisher(control.observer)
    return Logger(namespace="otedama.test", observer=publisher)


def test_json_lines_carry_level_namespace_message_and_fields() -> None:
    stream = io.StringIO()
    control = LogControl("info", "json", stream=stream)
    log = publisher_for(control)
    log.info("share accepted from {worker} at difficulty {difficulty}", worker="w1", difficulty=0.5)
    record = json.loads(stream.getvalue())
    assert record["level"] == "info"
    assert record["namespace"] == "otedama.test"
    assert record["message"] == "share accepted from w1 at difficulty 0.5"
    assert record["worker"] == "w1"
    assert record["difficulty"] == 0.5
    assert record["time"].endswith("+00:00")


def test_json_line_includes_the_traceback_of_a_failure() -> None:
    stream = io.StringIO()
    log = publisher_for(LogControl("info", "json", stream=stream))
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        log.failure("tick failed")
    record = json.loads(stream.getvalue())
    assert record["level"] == "critical"
    assert "ZeroDivisionError" in record["traceback"]


def test_level_filters_and_can_change_live() -> None:
    stream = io.StringIO()
    control = LogControl("warn", "text", stream=stream)
    log = publisher_for(control)
    log.info("hidden at warn")
    log.warn("shown at warn")
    control.set_level("debug")
    log.debug("shown after reload")
    text = stream.getvalue()
    assert "hidden at warn" not in text
    assert "shown at warn" in text
    assert "shown after reload" in text


def test_log_file_rotates_by_size_and_keeps_backups(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "otedama.log"
    control = LogControl("info", "json", stdout=False, file=target, max_size=2000, max_backups=2)
    log = publisher_for(control)
    for number in range(200):
        log.info("line {number} {padding}", number=number, padding="x" * 40)
    control.close()
    names = sorted(p.name for p in target.parent.iterdir())
    assert names == ["otedama.log", "otedama.log.1", "otedama.log.2"]
    assert target.stat().st_size <= 2000 + 400  # rotation happens after the line that crosses it
    last = target.read_text().strip().splitlines()[-1]
    assert json.loads(last)["number"] == 199


@pytest.mark.parametrize(
    ("text", "bytes_"),
    [
        (100, 100 * 2**20),
        ("100MB", 100 * 10**6),
        ("1GiB", 2**30),
        ("512kb", 512000),
        ("2.5MiB", int(2.5 * 2**20)),
    ],
)
def test_sizes(text: object, bytes_: int) -> None:
    assert size(2**20)(text) == bytes_


@pytest.mark.parametrize(
    "line",
    [
        "StratumFactory starting on 3333",
        "_QuietSite starting on 18443",
        "(TCP Port 3333 Closed)",
        "(UDP Port 4444 Closed)",
        "(TLS Port 3443 Closed)",
        "(UNIX Port /var/lib/otedama/admin.sock Closed)",
        "Starting factory <twisted.web.client._HTTP11ClientFactory object at 0x7f>",
        "Stopping factory <twisted.web.client._HTTP11ClientFactory object at 0x7f>",
    ],
)
def test_twisted_port_and_factory_chatter_is_shown_only_at_debug(line: str) -> None:
    from twisted.logger import globalLogPublisher
    from twisted.python import log as legacy

    for level, shown in (("info", False), ("debug", True)):
        stream = io.StringIO()
        control = LogControl(level, "text", stream=stream)
        globalLogPublisher.addObserver(control.observer)
        try:
            legacy.msg(line)
            legacy.msg("a legacy line that matters")
        finally:
            globalLogPublisher.removeObserver(control.observer)
        text = stream.getvalue()
        assert (line in text) is shown
        assert "a legacy line that matters" in text


def test_our_lines_that_look_like_chatter_are_kept() -> None:
    stream = io.StringIO()
    log = publisher_for(LogControl("info", "text", stream=stream))
    log.info("miner starting on {port}", port=3333)
    assert "miner starting on 3333" in stream.getvalue()


def test_listeners_are_logged_as_host_port() -> None:
    from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

    from otedama.ops.lifecycle import host_port

    assert host_port(IPv4Address("TCP", "127.0.0.1", 3333)) == "127.0.0.1:3333"
    assert host_port(IPv6Address("TCP", "::1", 3333)) == "[::1]:3333"
    assert host_port(UNIXAddress(b"data/admin.sock")) == "data/admin.sock"
