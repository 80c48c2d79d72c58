"""Running a federation on 127.0.0.1 for the multi-node tests: one devnet process
(``otedama devnet``) and node processes (``otedama serve``), each with its own SQLite
ledger, Stratum port, built-in CPU miner, health port and federation port, knowing only
the first node as bootstrap peer."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from otedama.chain.address import address_to_script, encode_segwit_address
from otedama.commands.federation import fetch_status

ROOT = Path(__file__).resolve().parents[2]
OTEDAMA = [sys.executable, "-m", "otedama.cli"]
T = TypeVar("T")


_TAKEN: set[int] = set()


def free_port() -> int:
    """A port free on TCP and UDP (the federation uses the same number for both), below
    the ephemeral range (so no outgoing connection takes it before the node binds it) and
    never handed out twice in one run."""
    rng = random.Random()
    while True:
        port = rng.randrange(20_000, 30_000)
        if port in _TAKEN:
            continue
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind(("0.0.0.0", port))
                udp.bind(("0.0.0.0", port))
            except OSError:
                continue
        _TAKEN.add(port)
        return port


def address(n: int) -> str:
    """A distinct devnet (regtest-format) payout address per node."""
    return encode_segwit_address("bcrt", 0, bytes([0x40 + n]) * 20)


def script(n: int) -> bytes:
    return address_to_script(address(n), "devnet")


def wait_for(what: str, condition: Callable[[], T | None], bound: float, step: float = 0.5) -> T:
    """Poll ``condition()`` until it returns something truthy; fail after ``bound`` s."""
    deadline = time.monotonic() + bound
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound:g} s: {what}")
        time.sleep(step)


def rpc(url: str, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)})
    request = urllib.request.Request(
        url, body.encode(), {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        answer = json.loads(reply.read())
    if answer.get("error"):
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


@dataclass
class Proc:
    """A subprocess with its output in a file (read on failure)."""

    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        out = open(self.log, "ab")
        self.process = subprocess.Popen(
            self.args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT)
        )
        out.close()

    def stop(self, sig: int = signal.SIGTERM, bound: float = 30.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(bound)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Devnet:
    directory: Path
    port: int = field(default_factory=free_port)
    difficulty: str = "0.002"
    proc: Proc | None = None
    #: What ``otedama federation status`` last said when it failed.
    last_status_error: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "devnet.yaml"
        config.write_text(
            "chain:\n  network: devnet\n  backend: devnet\n  devnet:\n"
            f"    listen: 127.0.0.1:{self.port}\n    difficulty: {self.difficulty}\n"
            f"    data_dir: {self.directory / 'chain'}\n",
            encoding="utf-8",
        )
        self.proc = Proc(
            "devnet", [*OTEDAMA, "devnet", "--config", str(config)], self.directory / "devnet.log"
        )
        self.proc.start()
        wait_for("the devnet answers", self._answers, 60)

    def _answers(self) -> bool:
        try:
            rpc(self.url, "getblockcount")
        except (OSError, urllib.error.URLError, RuntimeError):
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


@dataclass
class Node:
    """One federation node process."""

    n: int
    directory: Path
    devnet: Devnet
    bootstrap: int | None
    fed_port: int = field(default_factory=free_port)
    stratum_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    share_interval: str = "1s"
    window: str = "1m"
    miner_threads: int = 1
    proc: Proc | None = None

    @property
    def config(self) -> Path:
        return self.directory / "otedama.yaml"

    @property
    def database(self) -> str:
        return f"sqlite:///{self.directory / 'ledger.sqlite'}"

    def write_config(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        bootstrap = f'["127.0.0.1:{self.bootstrap}"]' if self.bootstrap else "[]"
        self.config.write_text(
            f"""app:
  name: fed-{self.n}
  mode: development
  log_level: info
  data_dir: {self.directory}
chain:
  network: devnet
  backend: bitcoind
  rpc:
    - url: {self.devnet.url}
  poll_interval: 1s
pool:
  wallet_address: {address(self.n)}
  fee_percentage: 1.0
  rewards:
    system: PPLNS
    window: 2h
stratum:
  enable: true
  address: 127.0.0.1:{self.stratum_port}
  job_timeout: 10s
  share_difficulty: 0.0002
  min_difficulty: 0.00001
  var_diff: true
  target_share_interval: 2s
mining:
  enable_cpu: true
  cpu:
    threads: {self.miner_threads}
database:
  url: {self.database}
api:
  enable: false
federation:
  enabled: true
  node_id: node-{self.n}
  listen_port: {self.fed_port}
  advertise_host: 127.0.0.1
  bootstrap_peers: {bootstrap}
  share_interval: {self.share_interval}
  window: {self.window}
monitoring:
  health:
    enabled: true
    address: 127.0.0.1:{self.health_port}
    path: /health
""",
            encoding="utf-8",
        )

    def migrate(self) -> None:
        subprocess.run(
            [*OTEDAMA, "migrate", "up", "--config", str(self.config)],
            check=True,
            capture_output=True,
            cwd=str(ROOT),
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            timeout=120,
        )

    def start(self) -> None:
        self.proc = Proc(
            f"node-{self.n}",
            [*OTEDAMA, "serve", "--config", str(self.config)],
            self.directory / "node.log",
        )
        self.proc.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/health"

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.health_url, timeout=10) as reply:
                report: dict[str, Any] = json.loads(reply.read())
        except urllib.error.HTTPError as error:
            report = json.loads(error.read())
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return report

    def status(self, cli: bool = False) -> dict[str, Any] | None:
        """The node's federation view; None (the caller's ``wait_for`` asks again within
        its bound) when it cannot be had.

        ``cli``: through ``otedama federation status --format json``, the operator's
        command (a process start each: about a second of CPU, so not for polling five
        nodes every two seconds); otherwise the same function that command calls, on the
        same ``/health`` report, in this process."""
        if not cli:
            view = fetch_status(self.health_url, 10)
            if isinstance(view, str):
                self.last_status_error = view
                return None
            return view
        command = [*OTEDAMA, "federation", "status", "--format", "json"]
        try:
            done = subprocess.run(
                [*command, "--config", str(self.config)],
                capture_output=True,
                cwd=str(ROOT),
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
                timeout=60,
            )
        except subprocess.TimeoutExpired:
            self.last_status_error = "otedama federation status did not finish within 60 s"
            return None
        if done.returncode != 0:
            self.last_status_error = done.stderr.decode(errors="replace").strip()
            return None
        cli_view: dict[str, Any] = json.loads(done.stdout)
        return cli_view
