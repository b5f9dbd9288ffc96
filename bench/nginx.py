"""Debian's nginx in front of N workers, configured from the shipped files in deploy/nginx/.

One renderer for the two users of a real nginx on loopback: the deploy test
(tests/integration/deploy/test_workers_behind_nginx.py, two workers) and the scale-out
benchmark (bench/scale.py, 1, 2 or 4 workers). The shipped site and stream files are
rewritten only where a loopback run must differ (ports, certificate paths, no port 80
redirect, no IPv6 listen), so what is measured and tested is what operators install.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent
NGINX_DIR = REPO_DIR / "deploy" / "nginx"
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"

# The shipped upstreams name two workers; their `server` lines are replaced by one per port.
_FEDERATION_UPSTREAM = re.compile(
    r"(        server 127\.0\.0\.1:2800\d max_fails=3 fail_timeout=5s;\n)+"
)
_UP = "max_fails=3 fail_timeout=5s"


def _upstream_lines(pattern: re.Pattern[str], text: str, ports: Sequence[int], indent: str) -> str:
    lines = "".join(f"{indent}server 127.0.0.1:{port} {_UP};\n" for port in ports)
    text, n = pattern.subn(lambda _: lines, text, count=1)
    assert n == 1, "the shipped nginx file no longer has the upstream this renderer rewrites"
    return text


def _client_upstream(text: str, name: str, lines: str) -> str:
    """The `server` lines of the site's upstream `name` replaced by `lines`."""
    pattern = re.compile(rf"(upstream {name} \{{\n(?:    [^\n]*\n)*?)(?:    server [^\n]*\n)+")
    text, n = pattern.subn(lambda m: m.group(1) + lines, text, count=1)
    assert n == 1, f"the shipped nginx site no longer has the upstream {name}"
    return text


def render_site(client_ports: Sequence[int], listen_port: int, cert: Path, key: Path) -> str:
    """deploy/nginx/homeserver.conf for workers on `client_ports`, TLS on 127.0.0.1:listen_port."""
    site = (NGINX_DIR / "homeserver.conf").read_text()
    site = re.sub(r"server \{\n    listen 80;.*?\n\}\n", "", site, count=1, flags=re.S)
    # The first worker writes events (the others stand by), the others answer /sync (the
    # only worker does, when there is one), every worker the rest.
    writer, *others = client_ports
    site = _client_upstream(
        site,
        "homeserver_event_writer",
        f"    server 127.0.0.1:{writer} {_UP};\n"
        + "".join(f"    server 127.0.0.1:{port} backup;\n" for port in others),
    )
    sync = "".join(f"    server 127.0.0.1:{port} {_UP};\n" for port in others or [writer])
    site = _client_upstream(site, "homeserver_sync", sync)
    every = "".join(f"    server 127.0.0.1:{port} {_UP};\n" for port in client_ports)
    site = _client_upstream(site, "homeserver_client", every)
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{listen_port} ssl http2;")
    site = site.replace("    listen [::]:443 ssl http2;\n", "")
    site = site.replace("/etc/ssl/homeserver/fullchain.pem", str(cert))
    site = site.replace("/etc/ssl/homeserver/privkey.pem", str(key))
    site = site.replace(
        "/etc/nginx/snippets/homeserver-proxy.conf", str(NGINX_DIR / "homeserver-proxy.conf")
    )
    directives = "\n".join(line for line in site.splitlines() if not line.lstrip().startswith("#"))
    assert ":8008" not in directives and "/etc/" not in directives, directives
    return site


def render_federation(federation_ports: Sequence[int], listen_port: int) -> str:
    """deploy/nginx/homeserver-federation.conf for workers on `federation_ports`."""
    stream = (NGINX_DIR / "homeserver-federation.conf").read_text()
    stream = _upstream_lines(_FEDERATION_UPSTREAM, stream, federation_ports, "        ")
    stream = stream.replace("listen 8448;", f"listen 127.0.0.1:{listen_port};")
    stream = stream.replace("        listen [::]:8448;\n", "")
    return stream


def nginx_conf(
    tmp: Path, site: Path, stream: Path | None = None, *, worker_connections: int = 1024
) -> Path:
    """A top-level nginx.conf under `tmp` (pid, logs, temp dirs there) including the site
    (and the stream file when given); returns its path, for `nginx -p tmp -c path`."""
    temp = {name: tmp / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    # As root, nginx's workers would switch to `nobody`, who cannot enter private tmp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    module = f"load_module {STREAM_MODULE};\n" if stream else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"{user}{module}"
        f"daemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\n"
        # Each proxied request holds two connections (client side and worker side).
        f"worker_rlimit_nofile {2 * worker_connections + 64};\n"
        f"events {{ worker_connections {worker_connections}; }}\n"
        "http {\n"
        f"  client_body_temp_path {temp['body']};\n  proxy_temp_path {temp['proxy']};\n"
        f"  fastcgi_temp_path {temp['fastcgi']};\n  uwsgi_temp_path {temp['uwsgi']};\n"
        f"  scgi_temp_path {temp['scgi']};\n"
        f"  include {site};\n"
        "}\n" + (f"include {stream};\n" if stream else "")
    )
    return conf
