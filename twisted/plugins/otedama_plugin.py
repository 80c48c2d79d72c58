"""twistd plugin pointer: ``twistd -n otedama --config FILE``.

Imports nothing from ``otedama`` at module level: twistd imports every plugin
module when its cache is stale, and the node's reactor must be chosen first.
"""

from twisted.application.service import ServiceMaker

otedama = ServiceMaker(
    "Otedama",
    "otedama.tap",
    "Federated peer-to-peer mining pool node (Stratum, bitcoind/devnet, ledger).",
    "otedama",
)
