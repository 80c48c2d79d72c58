"""Otedama: a federated peer-to-peer mining pool node on Twisted."""

__version__ = "0.1.0"
