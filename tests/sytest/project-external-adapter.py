#!/usr/bin/env python3
"""Adapter: lets SyTest's `-I External` plugin (ours) drive the project's homeserver.

Called by the plugin (run it with the project venv's python) as:
    project-external-adapter.py --config HS_DIR/sytest-hs.json
It needs the plugin's --client-http option: our Client-Server API listener is plain HTTP
(production puts a TLS proxy in front), so SyTest's clients use http://HOST:http_port while
federation (server name HOST:https_port) goes to our TLS federation listener on https_port.

What it does, each time SyTest starts a server:
  1. (re)creates a fresh PostgreSQL database for this server (DROP ... WITH (FORCE) first,
     so repeated runs on the same ports start clean);
  2. `homeserver generate-config` (client listener, TLS federation listener with SyTest's
     per-server cert, SyTest's CA as the federation CA bundle, SyTest's servers admitted,
     open registration, no rate limits, the database DSN), then edits the YAML for what
     generate-config has no flag for (registration shared secret, public_baseurl, default
     room version, loopback federation, URL previews, federated presence, MSC2228
     ephemeral messages, SyTest's mock CAS server and captcha verifier);
  3. sends its own stdout/stderr to the JSON's log_file and execs `homeserver run -c`,
     so SyTest's SIGINT (then SIGKILL) reaches the server itself.

Environment (all optional):
  SYTEST_PG_DSN      maintenance DSN used to create databases
                     (default postgresql://postgres@127.0.0.1:5432/postgres)
  SYTEST_DB_PREFIX   database name prefix (default sytest_ext_); name = prefix + https_port
  SYTEST_HS_LOG_LEVEL  DEBUG/INFO/WARNING/ERROR (default INFO)
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import yaml  # a dependency of the project, so present in its venv

ap = argparse.ArgumentParser()
ap.add_argument("--config", required=True)
c = json.load(open(ap.parse_args().config))

if not c.get("client_over_plain_http"):
    sys.exit(
        "project-external-adapter: run SyTest with --client-http (our client listener is plain HTTP)"
    )

d = c["data_dir"]
host = c["bind_host"]
https_port, http_port = int(c["https_port"]), int(c["http_port"])


# 0. our ports may be blocked for up to 60 s by a TIME_WAIT of some other process's
#    outbound connection (they lie in the ephemeral range; the plugin reserves them, but
#    only from its first server on): wait until both can be bound as the server will.
def bindable(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


deadline = time.monotonic() + float(os.environ.get("SYTEST_PORT_WAIT_S", "45"))
while not (bindable(https_port) and bindable(http_port)) and time.monotonic() < deadline:
    time.sleep(1)

# 1. a fresh database
admin_dsn = os.environ.get("SYTEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
db_name = os.environ.get("SYTEST_DB_PREFIX", "sytest_ext_") + str(https_port)
subprocess.run(
    [
        "psql",
        admin_dsn,
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        "SET client_min_messages = warning",
        "-c",
        f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)',
        "-c",
        f'CREATE DATABASE "{db_name}"',
    ],
    check=True,
    stdout=subprocess.DEVNULL,
)
u = urlsplit(admin_dsn)
dsn = urlunsplit((u.scheme, u.netloc, "/" + db_name, u.query, u.fragment))

# 2. configuration
cfg_path = os.path.join(d, "homeserver.yaml")
hs = [sys.executable, "-m", "homeserver"]
gen = hs + [
    "generate-config",
    "--server-name",
    c["server_name"],
    "--data-dir",
    os.path.join(d, "hs-data"),
    "--listen",
    f"{host}:{http_port}",
    "--database-dsn",
    dsn,
    "--open-registration" if c.get("enable_registration", True) else None,
    "--no-rate-limits" if c.get("disable_rate_limits", True) else None,
    "--federation-listen",
    f"{host}:{https_port}",
    "--tls-cert",
    c["tls_certificate_path"],
    "--tls-key",
    c["tls_private_key_path"],
    "--ca-bundle",
    c["tls_ca_path"],
    # SyTest's servers (the two instances, its fake federation server, ...) are all named
    # BIND_HOST:PORT; a name without a port admits that host on any port.
    "--allow-server",
    host,
    "--output",
    cfg_path,
]
subprocess.run([a for a in gen if a is not None], check=True, stdout=subprocess.DEVNULL)

cfg = yaml.safe_load(open(cfg_path))
cfg["public_baseurl"] = c["public_baseurl"].rstrip("/") + "/"
cfg["registration"]["shared_secret"] = c.get("registration_shared_secret") or "reg_secret"
cfg["registration"]["guests"] = True  # SyTest registers guests
if c.get("default_room_version"):
    cfg.setdefault("rooms", {})["default_version"] = str(c["default_room_version"])
# SyTest checks that presence reaches remote room members (40presence.pl); ours is
# kept among local users unless configured otherwise.
cfg["presence"] = {"mode": "federated"}
# SyTest checks MSC2228 self-destructing messages (04messages.pl, 31room-send.pl), which
# Synapse runs behind enable_ephemeral_messages; ours is off by default too.
cfg["ephemeral_messages"] = {"enabled": True}
fed = cfg["federation"]
# every SyTest server is on loopback; its CA signs every certificate they present
fed["allow_private_addresses"] = True
fed["verify_tls"] = True
# SyTest's push gateway presents a certificate of its CA
cfg.setdefault("push", {})["ca_bundle"] = c["tls_ca_path"]
# SyTest's appservices (registration files it wrote) listen behind its CA's certificate
cfg["app_services"] = list(c.get("app_service_config_files") or [])
cfg["app_services_ca_bundle"] = c["tls_ca_path"]
# SyTest's mail sink (plain SMTP on loopback) receives the validation mails it reads the
# confirmation links from; it registers and validates several addresses quickly.
if c.get("smtp"):
    cfg["email"] = {
        "enabled": True,
        "smtp_host": c["smtp"]["host"],
        "smtp_port": int(c["smtp"]["port"]),
        "smtp_tls": "none",
        "from": c["smtp"].get("notif_from") or "hs@localhost",
        "rate_limits": {
            "per_address": {"per_second": 1000.0, "burst": 1000},
            "per_ip": {"per_second": 1000.0, "burst": 1000},
        },
    }
# SyTest's fake identity server listens on loopback (any port) with a self-signed cert.
cfg.setdefault("identity", {})["id_servers"] = [host, "localhost"]  # its name: reverse DNS
cfg["identity"]["id_servers_insecure_tls"] = bool(c.get("insecure_outbound_tls_ok"))
media = cfg.setdefault("media", {})
media["url_preview_enabled"] = True
media["url_preview_ca_bundle"] = c["tls_ca_path"]  # SyTest serves its pages over https
if not c.get("ip_range_blacklist"):
    # SyTest's preview targets are on loopback
    media["url_preview_allowed_networks"] = ["127.0.0.0/8", "::1/128"]
# SyTest's mock CAS server and captcha verifier (its test server, https with its CA), as
# Synapse's SyTest configuration has them: the captcha can be completed at registration
# but no flow requires it, and a CAS user may sign in as the password account of the
# same name (SyTest's UIA tests sign its password users in by CAS).
if c.get("cas"):
    cfg["cas"] = {
        "enabled": True,
        "server_url": c["cas"]["server_url"],
        "allow_existing_users": True,
        "ca_bundle": c["tls_ca_path"],
    }
if c.get("recaptcha"):
    rc = c["recaptcha"]
    cfg["recaptcha"] = {
        "enabled": True,
        "public_key": rc["public_key"],
        "private_key": rc["private_key"],
        "siteverify_api": rc["siteverify_api"],
        "required": False,
        "ca_bundle": c["tls_ca_path"],
    }
cfg["log_level"] = os.environ.get("SYTEST_HS_LOG_LEVEL", "INFO")
with open(cfg_path, "w") as f:
    yaml.safe_dump(cfg, f, sort_keys=False)

# 3. run, logging to the file SyTest names (SyTest itself keeps only the last 20 lines)
print(f"project-external-adapter: db {db_name}, log {c['log_file']}", file=sys.stderr, flush=True)
fd = os.open(c["log_file"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.dup2(fd, 1)
os.dup2(fd, 2)
os.close(fd)
os.execv(sys.executable, hs + ["run", "-c", cfg_path])
