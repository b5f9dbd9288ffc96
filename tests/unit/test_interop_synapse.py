"""The pieces of interop/synapse.py that need no Synapse: DSNs and the install decision."""

from __future__ import annotations

import pytest

from interop import synapse


def test_psycopg2_args_from_a_tcp_dsn():
    args = synapse.psycopg2_args("postgresql://bob:s3cret@db.internal:6543/postgres")
    assert args == {"user": "bob", "host": "db.internal", "port": 6543, "password": "s3cret"}


def test_psycopg2_args_from_the_embedded_servers_socket_dsn():
    # What pgserver hands out: no host in the authority, the socket directory in the query.
    args = synapse.psycopg2_args("postgresql://postgres:@/postgres?host=/tmp/pg/socket")
    assert args == {"user": "postgres", "host": "/tmp/pg/socket", "port": 5432}


def test_dsn_with_database_keeps_the_query():
    dsn = synapse.dsn_with_database("postgresql://postgres:@/postgres?host=/tmp/s", "syn")
    assert dsn == "postgresql://postgres:@/syn?host=/tmp/s"


NO_NETWORK = (
    "WARNING: Retrying (Retry(total=4)) after connection broken by "
    "'NewConnectionError(...: Failed to establish a new connection: "
    "[Errno -3] Temporary failure in name resolution)': /simple/matrix-synapse/\n"
    "ERROR: No matching distribution found for matrix-synapse"
)
BUILD_FAILURE = "ERROR: Failed building wheel for psycopg2-binary"


@pytest.mark.parametrize("pip_output, unavailable", [(NO_NETWORK, True), (BUILD_FAILURE, False)])
def test_install_tells_an_unreachable_index_from_other_failures(
    tmp_path, monkeypatch, pip_output, unavailable
):
    """Only an unreachable package index makes Synapse 'unavailable' (its tests skip); any
    other pip failure is an error (its tests fail). pip itself is stood in for here."""
    import subprocess

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()  # a venv exists, without Synapse in it

    def fake_run(cmd, **kwargs):
        if "pip" in cmd:
            return subprocess.CompletedProcess(cmd, 1, "", pip_output)
        return subprocess.CompletedProcess(cmd, 1, "", "No module named 'synapse'")

    monkeypatch.setattr(synapse.subprocess, "run", fake_run)
    with pytest.raises(synapse.SynapseError) as err:
        synapse.install(venv)
    assert isinstance(err.value, synapse.SynapseUnavailable) is unavailable
