"""Where handlers live: a package serves routes only from its `routes.py` or `routes/`
package, so logic that other code calls (federation, sync, e2ee) is never in a module of
handlers, and every route table is found in one place per package."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"RouteTable", "FederationRouteTable"}
# The two modules that define the table classes.
EXEMPT = {"federation/route_table.py", "homeserver/http/routes.py"}


def _is_routes_module(relative: Path) -> bool:
    return relative.name == "routes.py" or "routes" in relative.parts[:-1]


def _builds_a_table(tree: ast.AST) -> bool:
    """A call of RouteTable() / FederationRouteTable(), by bare or dotted name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in TABLES:
                return True
    return False


def _misplaced(root: Path) -> list[str]:
    found = []
    for package in ("homeserver", "federation", "e2ee"):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            if str(relative) in EXEMPT or _is_routes_module(relative):
                continue
            if _builds_a_table(ast.parse(path.read_text(), str(relative))):
                found.append(str(relative))
    return sorted(found)


def test_route_tables_live_only_in_routes_modules():
    assert _misplaced(ROOT) == []


def test_the_check_finds_a_table_outside_routes(tmp_path):
    """The walk does see a table declared elsewhere (so the test above can fail)."""
    stray = tmp_path / "homeserver" / "things" / "handlers.py"
    stray.parent.mkdir(parents=True)
    stray.write_text("from x import routes_mod\nroutes = routes_mod.RouteTable()\n")
    kept = tmp_path / "homeserver" / "things" / "routes" / "a.py"
    kept.parent.mkdir(parents=True)
    kept.write_text("routes = RouteTable()\n")
    (tmp_path / "federation").mkdir()
    (tmp_path / "federation" / "stray.py").write_text("t = FederationRouteTable()\n")
    (tmp_path / "e2ee").mkdir()
    assert _misplaced(tmp_path) == ["federation/stray.py", "homeserver/things/handlers.py"]
