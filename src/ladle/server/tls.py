"""TLS for both server ports: the certificate files checked once, then one context per protocol.

REST gets an :class:`ssl.SSLContext` offering ALPN ``http/1.1``, the built-in gRPC engine one offering
``h2``, and the grpcio engine the same PEM files as bytes. TLS 1.2 is the minimum everywhere. A
missing or unreadable file, a file that is not PEM, or a key that does not match the certificate is
a :class:`~ladle.errors.ConfigError` naming the file, raised before any port is opened.

>>> files = TlsFiles.load(settings.with_config(store.config))   # None when TLS is off
>>> files.context(["h2"])
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from ladle.errors import ConfigError
from ladle.server.settings import ServerSettings


def _read(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"TLS {what} file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"TLS {what} file {path} cannot be read: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"TLS {what} file {path} is not PEM (no '-----BEGIN' line)")
    return data


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of the TLS settings, read and checked."""

    cert_path: str
    key_path: str
    cert: bytes
    key: bytes
    client_ca: bytes | None
    client_ca_path: str | None
    client_auth: str

    @classmethod
    def load(cls, settings: ServerSettings) -> TlsFiles | None:
        """The files of ``settings`` (after ``with_config``), checked; ``None`` when TLS is off."""
        if settings.tls_cert is None:
            if settings.tls_key is not None or settings.tls_client_ca is not None:
                raise ConfigError("TLS: --tls-key and --tls-client-ca need --tls-cert (feature_server.tls.cert)")
            return None
        if settings.tls_key is None:
            raise ConfigError("TLS: --tls-cert needs --tls-key (feature_server.tls.key), the certificate's private key")
        ca_path = settings.tls_client_ca
        files = cls(
            cert_path=settings.tls_cert,
            key_path=settings.tls_key,
            cert=_read(settings.tls_cert, "certificate"),
            key=_read(settings.tls_key, "key"),
            client_ca=_read(ca_path, "client CA") if ca_path else None,
            client_ca_path=ca_path,
            client_auth=settings.tls_client_auth or "required",
        )
        files.context([])  # fails here, naming the files, if the key does not match or a file is bad
        if settings.grpc and settings.grpc_engine == "grpcio" and files.client_ca and not files.require_client_cert:
            raise ConfigError("TLS: grpc_engine grpcio cannot make client certificates optional; use 'required'")
        return files

    def context(self, alpn: list[str]) -> ssl.SSLContext:
        """A server context: TLS 1.2+, the certificate, client certificates if configured, ``alpn``."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_path, self.key_path)
        except ssl.SSLError as exc:
            reason = "the key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(exc) else str(exc)
            where = f"certificate {self.cert_path} with key {self.key_path}"
            raise ConfigError(f"TLS: cannot use {where}: {reason}") from None
        except OSError as exc:  # changed since load(), or a password-protected key
            raise ConfigError(f"TLS: cannot load {self.cert_path} / {self.key_path}: {exc}") from None
        if self.client_ca is not None:
            try:
                context.load_verify_locations(cadata=self.client_ca.decode("ascii", "replace"))
            except ssl.SSLError as exc:
                where = str(self.client_ca_path)
                raise ConfigError(f"TLS client CA file {where} has no usable certificate: {exc}") from None
            context.verify_mode = ssl.CERT_REQUIRED if self.client_auth == "required" else ssl.CERT_OPTIONAL
        if alpn:
            context.set_alpn_protocols(alpn)
        return context

    @property
    def require_client_cert(self) -> bool:
        """Whether a client without a certificate (chaining to the client CA) is refused."""
        return self.client_ca is not None and self.client_auth == "required"
