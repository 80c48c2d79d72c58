"""Write the seed inputs of each fuzz target's corpus from the repository's own vectors.

Usage: ``python tests/fuzz/seed_corpus.py`` (idempotent: files are named by content).
The seeds are real traffic and replies (Stratum lines of cpuminer ↔ ckpool, Bitcoin
Core's RPC replies and templates, the shipped configs) and the inputs that once crashed
a parser. Inputs found by fuzzing are added beside them with :func:`harness.keep`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import keep  # noqa: E402

ROOT = HERE.parents[1]
VECTORS = ROOT / "tests" / "vectors"
CORPUS = HERE / "corpus"

_STATUS_BYTE = {200: b"\x00", 401: b"\x01", 403: b"\x02", 404: b"\x03", 500: b"\x04"}

#: Inputs that crashed a parser before its fix (kept so they are replayed forever).
DEEP = b"[" * 5000
CRASHERS = {
    "rpc_reply": [b"\x00" + b'{"result":' + DEEP, b"\x04" + b'{"error":' + b"{" * 3000],
    "block_template": [b'{"result":' + DEEP + b',"error":null,"id":1}'],
    "config_file": [DEEP, b"\xff\xfeapp: {}\n", b"app:\n  name: \xc3\x28\n"],
}

STRATUM_EXTRA = [
    b'{"id":9,"method":"mining.submit","params":["a","b","c","d","e"]}\n',
    b'{"id":9,"method":"mining.suggest_difficulty","params":[1e999999999]}\n',
    b'{"id":9,"method":"mining.suggest_difficulty","params":["NaN"]}\n',
    b'{"id":9,"method":"mining.configure","params":[["version-rolling"],'
    b'{"version-rolling.mask":"ffffffff","version-rolling.min-bit-count":99}]}\n',
    b'{"id":' + b"9" * 5000 + b',"method":"mining.subscribe","params":[]}\n',
    b'{"id":[1],"method":"mining.authorize","params":[]}\n',
    b"\x00\xff\r\n\r\n{}\n[]\nnull\n",
    b'{"id":1,"method":"mining.subscribe","params":' + b"[" * 3000 + b"\n",
]


def stratum_lines() -> list[bytes]:
    path = VECTORS / "stratum" / "cpuminer-ckpool.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()[1:-1]
    sent = [json.loads(line) for line in lines]
    return [item["line"].encode() + b"\n" for item in sent if item.get("dir") == "miner->pool"]


def main() -> None:
    miner = stratum_lines()
    for target in ("stratum_codec", "stratum_session"):
        keep(CORPUS / target, b"".join(miner))  # a whole session
        for line in [*miner[:12], *STRATUM_EXTRA]:
            keep(CORPUS / target, b"\x01" + line)  # odd first byte: after the opening

    for path in [*(ROOT / "etc").glob("*.yaml"), *(VECTORS / "stratum").glob("*.yaml")]:
        keep(CORPUS / "config_file", path.read_bytes())
        import yaml

        keep(CORPUS / "config_data", json.dumps(yaml.safe_load(path.read_text())).encode())

    errors = json.loads((VECTORS / "bitcoind" / "rpc-errors.json").read_text())["cases"]
    for case in errors.values():
        replies = [case] if "http_status" in case else list(case.values())
        for reply in [r for r in replies if isinstance(r, dict) and "http_status" in r]:
            status = _STATUS_BYTE.get(int(reply["http_status"]), b"\x00")
            keep(CORPUS / "rpc_reply", status + reply["response_body"].encode())

    templates = json.loads((VECTORS / "bitcoind" / "templates-with-txs.json").read_text())
    for case in templates["cases"]:
        body = json.dumps({"result": case["getblocktemplate"], "error": None, "id": 1})
        keep(CORPUS / "block_template", body.encode())
        keep(CORPUS / "rpc_reply", b"\x00" + body.encode())

    for target, inputs in CRASHERS.items():
        for data in inputs:
            keep(CORPUS / target, data)


if __name__ == "__main__":
    main()
