"""Runs the scenarios against one homeserver that is already running.

    python -m bench.loadgen --url http://127.0.0.1:8008 [--pid PID] [--quick]

Registration must be open without verification and rate limits off. With
--pid the server's resident memory is recorded too. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from bench.client import new_session
from bench.scenarios import SCENARIOS, run_scenario
from bench.scenarios.base import DEFAULT, QUICK, Context, Target


def parse_only(value: str | None) -> list[str]:
    if not value:
        return list(SCENARIOS)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    # Keep the dependency order whatever order they were named in.
    return [n for n in SCENARIOS if n in names]


async def _main(args: argparse.Namespace) -> dict:
    target = Target("server", args.url.rstrip("/"), args.pid)
    sizes = QUICK if args.quick else DEFAULT
    results = {}
    async with new_session() as session:
        ctx = Context(target, sizes, session)
        for name in parse_only(args.only):
            results[name] = await run_scenario(name, ctx)
            print(f"{name}: {results[name]['status']}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True, help="base URL of the homeserver")
    parser.add_argument("--pid", type=int, help="server process id, to record its memory")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", help="comma-separated scenario names")
    args = parser.parse_args(argv)
    results = asyncio.run(_main(args))
    sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
