"""`homeserver audit-sovereignty -c FILE`: every outbound destination the configuration
permits, and a scan of the database for plaintext in encrypted rooms. Exit code 1 when
plaintext is found. Never prints message contents: rooms, event types and counts only."""

from __future__ import annotations

from typing import Any

from homeserver.config import Config
from storage.sovereignty import plaintext_in_encrypted_rooms

__all__ = ["outbound_destinations", "plaintext_in_encrypted_rooms"]


def outbound_destinations(config: Config) -> list[tuple[str, str]]:
    """(what, destination or policy) for everything the server may contact."""
    out: list[tuple[str, str]] = []
    fed = config.federation
    if fed.allowed_servers:
        out += [("federation", s) for s in fed.allowed_servers]
    else:
        out.append(("federation", "none (federation closed)"))
    if fed.allow_private_addresses:
        out.append(("federation", "private and loopback addresses allowed"))
    out += [("federation key server", k.server_name) for k in fed.trusted_key_servers]
    for svc in config.app_services:
        if svc.url:
            out.append(("appservice " + svc.id, svc.url))
    media = config.media
    if media.url_preview_enabled:
        domains = config.url_previews.allowed_domains
        out.append(
            (
                "url previews",
                "any public domain" if domains is None else ", ".join(domains) or "no domain",
            )
        )
        out += [("url previews private network", n) for n in media.url_preview_allowed_networks]
    else:
        out.append(("url previews", "off"))
    if media.backend == "s3" and media.s3 is not None:
        out.append(("media s3", media.s3.endpoint_url or "the provider's default endpoint"))
    out += [("turn", uri) for uri in config.voip.turn_uris]
    email: Any = config.raw.get("email")
    if isinstance(email, dict):
        host = email.get("smtp_host")
        if host:
            out.append(("smtp", f"{host}:{email.get('smtp_port', 25)}"))
    # Push gateways are named by clients when they register a pusher; the server posts
    # notifications (without message contents for encrypted rooms) to those URLs.
    gateways = config.push.allowed_gateways
    if gateways:
        out += [("push gateway", g) for g in gateways]
    else:
        out.append(("push gateways", "any URL a client registers as a pusher"))
    # Contacted only for the binds, unbinds and lookups users ask for; never advertised.
    id_servers = config.identity.id_servers
    if id_servers:
        out += [("identity server", s) for s in id_servers]
    else:
        out.append(("identity servers", "none (none is advertised or contacted)"))
    # Contacted only when configured: the one CAS server, to check sign-in tickets, and the
    # captcha verifier, to check registrations' captcha answers.
    if config.cas.enabled:
        out.append(("cas server", config.cas.server_url))
    else:
        out.append(("cas", "off (single sign-on not configured)"))
    if config.recaptcha.enabled:
        out.append(("captcha verifier", config.recaptcha.siteverify_api))
    out.append(("presence", f"{config.presence.mode}"))
    return out
