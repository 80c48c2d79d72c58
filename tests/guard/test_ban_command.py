"""``otedama ban`` against a guard serving the admin socket on a real unix socket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.threads import deferToThread

from otedama.cli import main
from otedama.ops.audit import AuditLog
from otedama.ops.bans import DdosSettings
from otedama.ops.firewall import Firewall
from otedama.ops.guard import AdminFactory, Guard


@pytest_twisted.ensureDeferred
async def test_ban_add_list_remove_through_the_running_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from twisted.internet import reactor

    audit_file = tmp_path / "audit.log"
    guard = Guard(Firewall(), DdosSettings(), reactor, audit=AuditLog(audit_file, reactor))
    sock = tmp_path / "admin.sock"
    port = await UNIXServerEndpoint(reactor, str(sock), mode=0o600).listen(AdminFactory(guard))
    assert sock.stat().st_mode & 0o777 == 0o600

    async def run(*argv: str) -> int:
        code: int = await deferToThread(main, ["ban", *argv, "--socket", str(sock)])
        return code

    try:
        assert await run("add", "203.0.113.5", "--duration", "2h", "--reason", "abuse") == 0
        assert "banned 203.0.113.5 until" in capsys.readouterr().out
        assert guard.refusal("203.0.113.5") == "banned"
        # The audit line was on disk before the command returned.
        [line] = [json.loads(x) for x in audit_file.read_text().splitlines()]
        assert line["action"] == "ban.add" and line["target"] == "203.0.113.5"
        assert line["actor"].endswith("(otedama ban)") and line["detail"]["reason"] == "abuse"

        assert await run("list") == 0
        out = capsys.readouterr().out
        assert "203.0.113.5" in out and "abuse" in out
        assert await run("remove", "203.0.113.5") == 0
        assert "unbanned 203.0.113.5" in capsys.readouterr().out
        assert guard.refusal("203.0.113.5") is None
        assert await run("list") == 0
        assert "no bans in force" in capsys.readouterr().out
        assert await run("add", "example.com") == 1
        assert "not an IP address" in capsys.readouterr().err
        assert len(audit_file.read_text().splitlines()) == 2
    finally:
        await port.stopListening()


def test_ban_without_a_running_node_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ban", "list", "--socket", str(tmp_path / "none.sock")]) == 1
    assert "is the node running" in capsys.readouterr().err
