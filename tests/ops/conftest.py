"""A real node for the ops tests: twistd on the devnet with its CPU miner, metrics and health.

One node per test session (the miner costs a core): the metrics tests scrape it, the
command tests (``mining status``, ``system report``, ``debug bundle``) ask it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

BIN = Path(sys.executable).parent
TWISTD = BIN / "twistd"
OTEDAMA = BIN / "otedama"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for variable in ("DATABASE_URL", "REDIS_URL", "LOG_LEVEL", "OTEDAMA_MODE", "OTEDAMA_CONFIG"):
        env.pop(variable, None)
    return env


def node_config(data_dir: Path) -> dict[str, Any]:
    """A devnet node whose CPU miner finds shares every second or so and blocks often."""
    return {
        "app": {"data_dir": str(data_dir), "log_level": "info"},
        "chain": {
            "backend": "devnet",
            "network": "devnet",
            "devnet": {
                "listen": f"127.0.0.1:{free_port()}",
                "difficulty": 0.0005,
                "data_dir": str(data_dir / "devnet"),
            },
        },
        "stratum": {
            "address": f"127.0.0.1:{free_port()}",
            "share_difficulty": 0.00002,
            "min_difficulty": 0.00001,
            "max_workers": 1000,
        },
        "database": {"url": f"sqlite:///{data_dir / 'otedama.sqlite'}"},
        "mining": {"enable_cpu": True, "cpu": {"threads": 1}},
        "monitoring": {
            "logging": {"format": "json", "file": str(data_dir / "otedama.log")},
            "health": {"enabled": True, "address": f"127.0.0.1:{free_port()}"},
            "metrics": {"enabled": True, "address": f"127.0.0.1:{free_port()}"},
        },
    }


@dataclass
class RunningNode:
    config_file: Path
    config: dict[str, Any]
    process: subprocess.Popen[str]
    lines: list[str]

    @property
    def metrics_url(self) -> str:
        return f"http://{self.config['monitoring']['metrics']['address']}/metrics"

    @property
    def health_url(self) -> str:
        return f"http://{self.config['monitoring']['health']['address']}/health"

    def get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=10) as reply:
            body: bytes = reply.read()
            return body

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self.get(self.health_url))
        return report

    def otedama(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(OTEDAMA), *args],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_for_line(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(
            f"{text!r} not seen in the node's output:\n{''.join(self.lines[-40:])}"
        )


@pytest.fixture(scope="session")
def running_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    data_dir = tmp_path_factory.mktemp("node")
    config = node_config(data_dir)
    config_file = data_dir / "otedama.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = clean_env()
    migrate = subprocess.run(
        [str(OTEDAMA), "migrate", "up", "--config", str(config_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    process = subprocess.Popen(
        [str(TWISTD), "--pidfile=", "-n", "otedama", "--config", str(config_file)],
        cwd=data_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    node = RunningNode(config_file, config, process, lines)
    try:
        node.wait_for_line("Otedama node ready")
        yield node
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
