"""The node as systemd runs it: twistd finds the plugin, READY=1, SIGHUP, SIGTERM.

These start real `twistd` subprocesses from the installed package (the working directory
is a temporary folder, so nothing is imported from the source tree by accident).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

BIN = Path(sys.executable).parent
TWISTD = BIN / "twistd"
OTEDAMA = BIN / "otedama"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_config(data_dir: Path, devnet_port: int = 0, **overrides: object) -> dict:
    devnet_port = devnet_port or free_port()
    config: dict = {
        "app": {"data_dir": str(data_dir), "log_level": "info"},
        "chain": {
            "backend": "devnet",
            "network": "devnet",
            "devnet": {
                "listen": f"127.0.0.1:{devnet_port}",
                "difficulty": 0.001,
                "data_dir": str(data_dir / "devnet"),
            },
        },
        "stratum": {"address": "127.0.0.1:0", "share_difficulty": 0.001, "min_difficulty": 0.0001},
        "database": {"url": f"sqlite:///{data_dir / 'otedama.sqlite'}"},
        "mining": {"enable_cpu": False},
        "monitoring": {
            "logging": {"format": "json"},
            "health": {"enabled": True, "address": f"127.0.0.1:{free_port()}"},
        },
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        config.setdefault(section, {})[name] = value
    return config


class Output:
    """Collects a subprocess's output lines in a thread, so the pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30.0, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for index in range(start, len(self.lines)):
                if text in self.lines[index]:
                    return index
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen in output:\n{''.join(self.lines[-40:])}")


def migrate_up(config_file: Path) -> None:
    """``otedama migrate up`` for a node's config, run from its data dir."""
    subprocess.run(
        [str(OTEDAMA), "migrate", "up", "--config", str(config_file)],
        cwd=config_file.parent,
        capture_output=True,
        timeout=60,
        check=True,
    )


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    folder = tempfile.mkdtemp(prefix="otd-", dir="/tmp")  # AF_UNIX paths are short
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(60)
    yield sock, path
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)


def receive(sock: socket.socket, wanted: str) -> list[str]:
    """Read notify datagrams until one holds ``wanted``; return everything seen."""
    seen: list[str] = []
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message.split("\n"):
            return seen


def test_twistd_finds_the_plugin_from_the_installed_package(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(TWISTD), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "otedama" in result.stdout
    options = subprocess.run(
        [str(TWISTD), "otedama", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert "--config" in options.stdout


def test_config_validate_command_lists_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stratum": {"var_diff": "yes please", "address": "x"}}))
    result = subprocess.run(
        [str(OTEDAMA), "config", "validate", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert 'stratum.var_diff: expected true/false, got "yes please"' in result.stderr
    assert 'stratum.address: expected host:port, got "x"' in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(node_config(tmp_path)))
    result = subprocess.run(
        [str(OTEDAMA), "config", "validate", "--config", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_twistd_refuses_an_invalid_config_with_its_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stratum:\n  max_workers: lots\n")
    result = subprocess.run(
        [str(TWISTD), "--pidfile=", "-n", "otedama", "--config", str(bad)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert (
        'stratum.max_workers: expected a whole number, got "lots"' in result.stdout + result.stderr
    )


def test_ready_reload_and_stop_under_systemd_protocol(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, address = notify_socket
    config_file = tmp_path / "otedama.yaml"
    port = free_port()
    config_file.write_text(yaml.safe_dump(node_config(tmp_path, port)))
    env = {**os.environ, "NOTIFY_SOCKET": address}
    for variable in ("DATABASE_URL", "LOG_LEVEL", "OTEDAMA_MODE", "OTEDAMA_CONFIG"):
        env.pop(variable, None)
    migrate = subprocess.run(
        [str(OTEDAMA), "migrate", "up", "--config", str(config_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    process = subprocess.Popen(
        [str(TWISTD), "--pidfile=", "-n", "otedama", "--config", str(config_file)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    try:
        receive(sock, "READY=1")
        ready_line = output.wait_for("Otedama node ready")
        assert '"level": "info"' in output.lines[ready_line], "JSON log lines expected"
        output.wait_for("new block template")
        health = subprocess.run(
            [str(OTEDAMA), "health", "--config", str(config_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert health.returncode == 0, health.stdout + health.stderr
        report = json.loads(health.stdout)
        assert report["status"] == "ok"
        assert set(report["checks"]) == {"chain", "database", "stratum"}

        # A good new file: RELOADING=1, then READY=1, and the new level is live.
        config_file.write_text(
            yaml.safe_dump(
                node_config(
                    tmp_path, port, stratum__target_share_interval="3s", app__log_level="debug"
                )
            )
        )
        process.send_signal(signal.SIGHUP)
        seen = receive(sock, "READY=1")
        assert any("RELOADING=1" in message for message in seen)
        output.wait_for("configuration reloaded")
        assert not any("reload hook failed" in line for line in output.lines)

        # A bad new file is refused; the node keeps running on the old one.
        config_file.write_text("stratum:\n  var_diff: maybe\n")
        mark = len(output.lines)
        process.send_signal(signal.SIGHUP)
        receive(sock, "READY=1")
        refused = output.wait_for("reload refused", start=mark)
        assert "stratum.var_diff" in "".join(output.lines[refused : refused + 3])
        assert process.poll() is None

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        receive(sock, "STOPPING=1")
        process.wait(timeout=15)
        elapsed = time.monotonic() - started
        # twistd re-raises the signal it stopped on, as systemd expects (SIGTERM counts as
        # a clean exit there); anything else is a crash.
        assert process.returncode in (0, -signal.SIGTERM), "".join(output.lines[-30:])
        assert not any("Traceback" in line for line in output.lines), "".join(output.lines[-60:])
        assert elapsed < 10.0, f"SIGTERM took {elapsed:.1f} s"
        output.wait_for("Otedama node stopped")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sigterm_to_the_node_and_its_process_group_stops_it_once(tmp_path: Path) -> None:
    """GNU timeout signals the node, then its whole process group (the built-in miner's
    workers too): the second SIGTERM must not stop the reactor again (ReactorNotRunning)."""
    config_file = tmp_path / "otedama.yaml"
    config = node_config(
        tmp_path,
        mining__enable_cpu=True,
        mining__cpu={"threads": 1},
        stratum__address=f"127.0.0.1:{free_port()}",
    )
    config["monitoring"]["logging"]["format"] = "text"
    config_file.write_text(yaml.safe_dump(config))
    migrate_up(config_file)
    process = subprocess.Popen(
        [str(TWISTD), "--pidfile=", "-n", "otedama", "--config", str(config_file)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, shared with the miner's workers
    )
    output = Output(process)
    try:
        output.wait_for("CPU miner starting")
        output.wait_for("Otedama node ready")
        os.kill(process.pid, signal.SIGTERM)
        # The group's signal comes while the node is stopping (not merged with the first).
        output.wait_for("Received SIGTERM, shutting down.")
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        output.wait_for("Otedama node stopped")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    text = "".join(output.lines)
    assert process.returncode in (0, -signal.SIGTERM), text[-3000:]
    assert "ReactorNotRunning" not in text, text[-3000:]
    assert "#critical]" not in text, text[-3000:]
    assert text.count("Received SIGTERM, shutting down.") == 1
    # When the group's signal arrives while the node is still stopping, it says so (it may
    # also come after the node is gone, which ends the process the same way).
    assert text.count("received SIGTERM again while stopping; nothing more to do") <= 1


def test_twistd_with_another_reactor_is_refused(tmp_path: Path) -> None:
    config_file = tmp_path / "otedama.yaml"
    config_file.write_text(yaml.safe_dump(node_config(tmp_path)))
    result = subprocess.run(
        [
            str(TWISTD),
            "--reactor=poll",
            "--pidfile=",
            "-n",
            "otedama",
            "--config",
            str(config_file),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Otedama needs the asyncio reactor" in result.stdout + result.stderr


@pytest.mark.parametrize("taken_by", ["devnet", "stratum"])
def test_a_part_that_cannot_start_stops_the_node_with_status_1(
    tmp_path: Path, taken_by: str
) -> None:
    """A port is taken: the node says why in one line and exits 1 (systemd restarts it)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config_file = tmp_path / "otedama.yaml"
        if taken_by == "devnet":
            config = node_config(tmp_path, port)
        else:
            config = node_config(tmp_path, stratum__address=f"127.0.0.1:{port}")
        config["monitoring"]["logging"]["format"] = "text"
        config_file.write_text(yaml.safe_dump(config))
        migrate_up(config_file)
        result = subprocess.run(
            [str(TWISTD), "--pidfile=", "-n", "otedama", "--config", str(config_file)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    [failed] = [line for line in result.stdout.splitlines() if "#critical]" in line]
    assert f"the node could not start: Couldn't listen on 127.0.0.1:{port}: " in failed
    assert "Address already in use; another process" in failed
    assert f"ss -ltnp 'sport = :{port}'" in failed
    assert "Traceback" not in result.stdout
    # The template request the stop cancels is not reported as a chain failure.
    assert "getting a block template failed" not in result.stdout
    assert "CancelledError" not in result.stdout


def test_loading_the_plugin_and_command_installs_no_reactor() -> None:
    """twistd imports the plugin before choosing a reactor; nothing may pick one early."""
    code = (
        "import sys\n"
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        "import twisted.plugins\n"
        "makers = [p for p in getPlugins(IServiceMaker, twisted.plugins) if p.tapname == 'otedama']\n"
        "assert makers, 'plugin not found'\n"
        "makers[0].options\n"
        "import otedama.tap, otedama.cli\n"
        "otedama.cli.build_parser()\n"
        "print('twisted.internet.reactor' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
