"""TLS for every listener (``security.enable_tls``, ``cert_file``, ``key_file``).

:func:`tls_context` turns the config into a :class:`ReloadableTLS`: an
``IOpenSSLServerConnectionCreator`` whose OpenSSL context is replaced on reload. Each
connection is created from the context in force when it was accepted and keeps it, so a
certificate renewed on disk and a ``SIGHUP`` change what new connections see while every
connected miner stays connected. :func:`tls_factory` wraps a listener's factory
(Stratum's TLS port, the API's HTTPS, federation links) in Twisted's TLS protocol.

A missing, unreadable or unparsable certificate or key, or a key that does not match
the certificate, is a :class:`TLSConfigError` naming the config key and the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IOpenSSLServerConnectionCreator
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from zope.interface import implementer

__all__ = [
    "ReloadableTLS",
    "TLSConfigError",
    "TLSServerFactory",
    "load_context",
    "tls_context",
    "tls_factory",
]

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class TLSConfigError(ValueError):
    """A certificate or key that cannot be used; the message names the key and file."""


def _read(key: str, path: Path | None) -> bytes:
    if path is None:
        raise TLSConfigError(f"{key}: security.enable_tls is true but {key} is not set")
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise TLSConfigError(f"{key}: cannot read {path}: {error.strerror or error}") from None


def load_context(cert_file: Path | None, key_file: Path | None) -> SSL.Context:
    """An OpenSSL server context from PEM files (the certificate file may hold the chain,
    leaf first). Raises :class:`TLSConfigError` naming the bad file."""
    cert_pem = _read("security.cert_file", cert_file)
    key_pem = _read("security.key_file", key_file)
    blocks = _PEM_CERT.findall(cert_pem)
    if not blocks:
        raise TLSConfigError(f"security.cert_file: {cert_file} holds no PEM certificate")
    try:
        chain = [x509.load_pem_x509_certificate(block) for block in blocks]
    except Exception as error:
        raise TLSConfigError(
            f"security.cert_file: {cert_file} is not a valid PEM certificate ({error})"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except Exception as error:
        raise TLSConfigError(
            f"security.key_file: {key_file} is not a valid PEM private key ({error})"
        ) from None
    try:
        options = ssl.CertificateOptions(
            privateKey=cast(Any, key),
            certificate=cast(Any, chain[0]),
            extraCertChain=cast(Any, chain[1:]),
        )
        context: SSL.Context = options.getContext()
    except Exception as error:
        raise TLSConfigError(
            f"security.key_file: {key_file} does not match the certificate in {cert_file} ({error})"
        ) from None
    return context


def check_tls_files(config: Any) -> list[str]:
    """Problems with the TLS files of ``config`` (none when TLS is off)."""
    security = config.security
    if not security.enable_tls:
        return []
    try:
        load_context(security.cert_file, security.key_file)
    except TLSConfigError as error:
        return [str(error)]
    return []


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """Server TLS whose certificate and key can be swapped while connections live."""

    log = Logger()

    def __init__(self, cert_file: Path, key_file: Path, context: SSL.Context) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.context = context
        #: Times the certificate was replaced.
        self.reloads = 0

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)

    def swap(self, context: SSL.Context) -> None:
        """New connections use ``context``; open ones keep theirs."""
        self.context = context
        self.reloads += 1

    def reload(
        self, reactor: Any, cert_file: Path | None = None, key_file: Path | None = None
    ) -> Deferred[bool]:
        """Read the files again in a thread and swap; a bad file keeps the old
        certificate (logged). Fires True when swapped."""
        cert = cert_file or self.cert_file
        key = key_file or self.key_file
        loading: Deferred[SSL.Context] = deferToThreadPool(
            reactor, reactor.getThreadPool(), load_context, cert, key
        )

        def loaded(context: SSL.Context) -> bool:
            self.cert_file, self.key_file = cert, key
            self.swap(context)
            self.log.info("TLS certificate reloaded from {cert}", cert=str(cert))
            return True

        def failed(failure: Any) -> bool:
            self.log.error(
                "TLS reload refused, keeping the current certificate: {error}",
                error=failure.getErrorMessage(),
            )
            return False

        return loading.addCallbacks(loaded, failed)

    def reload_hook(self, reactor: Any) -> Any:
        """A ``NodeService.add_reload_hook`` hook: re-read the files on every reload."""

        def hook(old: Any, new: Any) -> Deferred[bool] | None:
            security = new.security
            if not security.enable_tls:
                return None
            return self.reload(reactor, security.cert_file, security.key_file)

        return hook


def tls_context(config: Any) -> ReloadableTLS | None:
    """The node's TLS (None when ``security.enable_tls`` is false); every TLS listener
    (Stratum, API HTTPS, federation) shares it, so one reload renews them all."""
    security = config.security
    if not security.enable_tls:
        return None
    context = load_context(security.cert_file, security.key_file)
    return ReloadableTLS(Path(security.cert_file), Path(security.key_file), context)


class TLSServerFactory(TLSMemoryBIOFactory):
    """Twisted's TLS factory, except that a refusal by the wrapped factory
    (``buildProtocol`` → None) closes the socket instead of failing (the listeners'
    server side; the federation's dials use it as a client too)."""

    noisy = False

    def buildProtocol(self, addr: IAddress | None) -> Any:
        inner = self.wrappedFactory.buildProtocol(addr)
        if inner is None:
            return None
        return self.protocol(self, inner)


def tls_factory(tls: ReloadableTLS, factory: Any, clock: Any = None) -> TLSServerFactory:
    """``factory`` served over TLS (listen on a plain ``tcp:`` endpoint)."""
    creator: Any = tls  # zope interfaces do not type-check without mypy-zope
    return TLSServerFactory(creator, False, factory, clock)
