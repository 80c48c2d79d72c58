"""The federation: node identity, wire codec, DHT discovery, gossip (see docs/federation.md)."""
