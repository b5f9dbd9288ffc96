"""TLS contexts: the federation listener's certificate, and verification of remote ones."""

from __future__ import annotations

import ssl

from homeserver.config import ConfigError, FederationConfig


def server_context(config: FederationConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(config.tls_certificate), str(config.tls_private_key))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("federation.tls_certificate", f"cannot load certificate: {e}") from None
    return ctx


def client_context(config: FederationConfig) -> ssl.SSLContext | bool:
    """Verification is on unless the operator turned it off; the CA bundle replaces the
    system trust store when given (a private CA for in-jurisdiction servers)."""
    if not config.verify_tls:
        return False
    try:
        return ssl.create_default_context(
            cafile=str(config.ca_bundle) if config.ca_bundle else None
        )
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("federation.ca_bundle", f"cannot load CA bundle: {e}") from None
