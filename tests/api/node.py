"""A real node for the API tests: ``twistd -n otedama`` on a devnet with its CPU miner.

The node runs in a subprocess from the installed package, with the API, Stratum, the
devnet daemon and a SQLite ledger on free ports of 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

BIN = Path(sys.executable).parent
CORS_ORIGIN = "https://dashboard.example"
#: The devnet's CPU miner pays this address (the devnet's own default payout address).
MINER_WORKER = "cpu"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    process: subprocess.Popen[str]
    base: str
    config_path: Path
    data_dir: Path
    address: str
    log: Path

    def get(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(self.base + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                status, got = response.status, dict(response.headers.items())
        except urllib.error.HTTPError as error:
            body = error.read()
            status, got = error.code, dict(error.headers.items())
        got = {k.lower(): v for k, v in got.items()}
        data = json.loads(body) if body and "json" in got.get("content-type", "") else body
        return status, got, data

    def otedama(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "otedama"), *args, "--config", str(self.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def wait_until(self, what: str, check: Any, timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            result = check()
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; log:\n{self.log.read_text()[-3000:]}")


def start_node(tmp: Path, **api: Any) -> Node:
    data = tmp / "data"
    data.mkdir()
    api_port = free_port()
    config: dict[str, Any] = {
        "app": {"data_dir": str(data), "log_level": "info"},
        "chain": {
            "backend": "devnet",
            "network": "devnet",
            "devnet": {
                "listen": f"127.0.0.1:{free_port()}",
                "difficulty": 0.0005,
                "data_dir": str(data / "devnet"),
            },
        },
        "stratum": {
            "address": f"127.0.0.1:{free_port()}",
            "share_difficulty": 0.0001,
            "min_difficulty": 0.0001,
            "var_diff": False,
        },
        "database": {"url": f"sqlite:///{data / 'otedama.sqlite'}"},
        "mining": {"enable_cpu": True, "cpu": {"threads": 1}},
        "pool": {"payout_interval": "10m"},
        "api": {
            "enable": True,
            "address": f"127.0.0.1:{api_port}",
            "cors_origins": [CORS_ORIGIN],
            "auth": {"enabled": True, "rate_limiting": False, **api},
        },
        "monitoring": {"health": {"enabled": False}},
    }
    path = tmp / "otedama.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    migrate = subprocess.run(
        [str(BIN / "otedama"), "migrate", "up", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    log = tmp / "node.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "otedama", "--config", str(path)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp,
        env=env,
    )
    node = Node(process, f"http://127.0.0.1:{api_port}", path, data, "", log)

    def answering() -> Any:
        try:
            status, _, body = node.get("/api/v1/status")
        except OSError:
            return None
        return body if status == 200 else None

    node.wait_until("the API", answering, 60)
    return node


def stop_node(node: Node) -> None:
    node.process.terminate()
    try:
        node.process.wait(20)
    except subprocess.TimeoutExpired:
        node.process.kill()
        node.process.wait(10)
