"""Every operation of the spec's Client-Server API is served, or listed with the reason it
is not in homeserver/README.md ("Client-Server operations not served"); and /versions
advertises only versions of the spec.

Served means: the client app's router (homeserver.app.build_client_app, every route table
of ROUTE_MODULES mounted) answers the operation's method on its path, each path parameter
filled with a sample value, as aiohttp resolves a real request.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from homeserver.app import build_client_app
from homeserver.config import parse_config
from homeserver.misc.routes import SPEC_VERSIONS
from tests.schema import API_DIR

README = Path(__file__).resolve().parents[2] / "homeserver" / "README.md"
TABLE_HEADING = "## Client-Server operations not served"
_ROW = re.compile(r"^\|\s*(GET|PUT|POST|DELETE)\s*\|\s*`([^`]+)`\s*\|\s*(.*?)\s*\|\s*$")
_METHODS = ("get", "put", "post", "delete")


def spec_operations() -> dict[tuple[str, str], str | None]:
    """(METHOD, full path) -> the version that added it, for every operation."""
    found: dict[tuple[str, str], str | None] = {}
    for file in sorted((API_DIR / "client-server").glob("*.yaml")):
        doc = yaml.safe_load(file.read_text())
        base = doc["servers"][0]["variables"]["basePath"]["default"].rstrip("/")
        for path, operations in (doc.get("paths") or {}).items():
            for method, operation in operations.items():
                if method in _METHODS:
                    # The spec keeps two operations on one path apart with a trailing
                    # space (third-party invites, peeking /events).
                    full = base + path.strip()
                    found[(method.upper(), full)] = operation.get("x-addedInMatrixVersion")
    return found


def _sample(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def served(app: web.Application, method: str, path: str) -> bool:
    request = make_mocked_request(method, _sample(path), app=app)
    match = await app.router.resolve(request)
    return match.http_exception is None


def listed_in_readme(text: str) -> dict[tuple[str, str], str]:
    """(METHOD, path) -> reason, from the README's table."""
    _, _, section = text.partition(TABLE_HEADING)
    section = section.split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = _ROW.match(line)
        if m:
            rows[(m.group(1), m.group(2).strip())] = m.group(3)
    return rows


@pytest.fixture(scope="module")
def client_app() -> web.Application:
    # Mounting routes needs no services, only the configuration (the body size limit): the
    # app carries the Homeserver for handlers.
    config = parse_config(
        {"server_name": "spec.test", "data_dir": ".", "listeners": {"client": "127.0.0.1:8008"}},
        Path("/nonexistent"),
    )
    return build_client_app(types.SimpleNamespace(config=config))  # type: ignore[arg-type]


async def test_every_operation_is_served_or_listed_with_a_reason(client_app):
    listed = listed_in_readme(README.read_text())
    problems = []
    for (method, path), added in sorted(spec_operations().items(), key=lambda i: i[0][::-1]):
        is_served = await served(client_app, method, path)
        reason = listed.get((method, path))
        since = f" (added in v{added})" if added else ""
        if not is_served and reason is None:
            problems.append(f"not served and not listed: {method} {path}{since}")
        elif not is_served and not reason:
            problems.append(f"listed without a reason: {method} {path}")
        elif is_served and reason is not None:
            problems.append(f"served, remove it from the README's table: {method} {path}")
    assert not problems, (
        f"{len(problems)} operation(s) of the spec's Client-Server API, see the table "
        f"'{TABLE_HEADING}' in homeserver/README.md:\n  " + "\n  ".join(problems)
    )


def test_the_readme_lists_only_operations_of_the_spec():
    unknown = sorted(set(listed_in_readme(README.read_text())) - set(spec_operations()))
    assert not unknown, f"rows of the README's table that name no spec operation: {unknown}"


async def test_the_check_sees_an_unserved_operation(client_app):
    """The router check can fail: a made-up path and a wrong method are not served."""
    assert await served(client_app, "GET", "/_matrix/client/v1/rooms/{roomId}/hierarchy")
    assert not await served(client_app, "GET", "/_matrix/client/v3/no/such/{thing}")
    assert not await served(client_app, "DELETE", "/_matrix/client/v1/rooms/{roomId}/hierarchy")
    text = f"{TABLE_HEADING}\n\n| method | path | why |\n| --- | --- | --- |\n"
    text += "| GET | `/_matrix/client/v3/a` | because |\n| PUT | `/_matrix/client/v3/b` |  |\n"
    assert listed_in_readme(text) == {
        ("GET", "/_matrix/client/v3/a"): "because",
        ("PUT", "/_matrix/client/v3/b"): "",
    }


def _spec_versions() -> set[str]:
    """The versions of the spec snapshot: one changelog page each (content/changelog)."""
    changelog = API_DIR.parents[1] / "content" / "changelog"
    return {p.stem for p in changelog.glob("v1.*.md")}


def test_versions_advertises_only_spec_versions():
    """/versions names only versions of this spec snapshot, v1.1 up without gaps: a client
    reads the highest one as a promise (matrix-js-sdk turns on thread support for v1.4,
    authenticated media for v1.11). What such a version adds and is not served is in the
    README's table, which the test above keeps complete."""
    known = _spec_versions()
    assert known, "no changelog pages found in the spec snapshot"
    stable = [v for v in SPEC_VERSIONS if v.startswith("v1.")]
    assert set(stable) <= known, sorted(set(stable) - known)
    minors = [int(v.split(".")[1]) for v in stable]
    assert minors == list(range(1, max(minors) + 1))
