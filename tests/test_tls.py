"""TLS: a node serving https, a two-node https cluster, and mutual TLS between peers.

Certificates are made on the fly by trustme: one CA, and a certificate for
127.0.0.1 that each node uses as server and (for mutual TLS) client.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme

from conftest import pick_free_port
from phoenix.config import Config
from phoenix.server import hypercorn_config
from test_serve_process import phoenix_command, stderr_of

START_TIMEOUT = 15.0


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca_certs": tmp_path / "ca.pem", "certfile": tmp_path / "node.pem"}
    ca.cert_pem.write_to_path(str(files["ca_certs"]))
    cert.private_key_and_cert_chain_pem.write_to_path(str(files["certfile"]))
    return {
        "ca_certs": str(files["ca_certs"]),
        "certfile": str(files["certfile"]),
        "keyfile": str(files["certfile"]),
    }


def client_context(tls_files: dict[str, str], with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls_files["ca_certs"])
    if with_cert:
        context.load_cert_chain(tls_files["certfile"])
    return context


@asynccontextmanager
async def tls_node(
    folder: Path, port: int, settings: dict[str, Any], context: ssl.SSLContext
) -> AsyncIterator[trio.Process]:
    folder.mkdir(exist_ok=True)
    config = folder / "config.json"
    config.write_text(json.dumps({"port": f"127.0.0.1:{port}", "num_counters": 1000, **settings}))
    with (folder / "stderr.log").open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            phoenix_command("serve", "--config", str(config)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=folder,
        )
        try:
            async with httpx.AsyncClient(verify=context, timeout=2) as client:
                with trio.move_on_after(START_TIMEOUT) as waited:
                    while True:
                        if process.poll() is not None:
                            pytest.fail("node exited:\n" + stderr_of(folder))
                        try:
                            response = await client.get(f"https://127.0.0.1:{port}/cluster")
                            if response.status_code == 200 and response.json()["ready"]:
                                break
                        except httpx.TransportError:
                            pass
                        await trio.sleep(0.1)
                if waited.cancelled_caught:
                    pytest.fail("node did not become ready:\n" + stderr_of(folder))
            yield process
        finally:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def test_node_serves_https_and_refuses_plain_http(
    tmp_path: Path, tls_files: dict[str, str]
) -> None:
    port = pick_free_port()
    context = client_context(tls_files, with_cert=False)
    async with tls_node(tmp_path, port, tls_files, context):
        async with httpx.AsyncClient(verify=context, timeout=5) as client:
            url = f"https://127.0.0.1:{port}"
            assert (await client.post(f"{url}/set?key=k&ttl=0", content=b"v")).status_code == 200
            assert (await client.get(f"{url}/get?key=k")).content == b"v"
        async with httpx.AsyncClient(timeout=5) as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://127.0.0.1:{port}/ping")
        async with httpx.AsyncClient(timeout=5) as unverified_ca:
            with pytest.raises(httpx.ConnectError):
                await unverified_ca.get(f"https://127.0.0.1:{port}/ping")


async def test_the_cli_talks_to_a_mutual_tls_node_with_ca_certs_and_cert(
    tmp_path: Path, tls_files: dict[str, str]
) -> None:
    port = pick_free_port()
    settings = {**tls_files, "require_client_cert": True}
    context = client_context(tls_files, with_cert=True)
    url = f"https://127.0.0.1:{port}"

    async def phoenix(*args: str) -> subprocess.CompletedProcess[bytes]:
        with trio.fail_after(START_TIMEOUT):
            return await trio.run_process(
                phoenix_command(*args, "--url", url),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    tls = ("--ca-certs", tls_files["ca_certs"], "--cert", tls_files["certfile"])
    async with tls_node(tmp_path, port, settings, context):
        stored = await phoenix("set", "k", "over tls", *tls)
        assert (stored.returncode, stored.stderr) == (0, b"")
        got = await phoenix("get", "k", *tls)
        assert (got.returncode, got.stdout) == (0, b"over tls")
        # A file that cannot be used is a usage error, in one line, before any request.
        missing = await phoenix("get", "k", "--ca-certs", str(tmp_path / "absent.pem"))
        assert missing.returncode == 2
        assert missing.stderr.decode().startswith("phoenix: error: [Errno 2] No such file")
        assert len(missing.stderr.splitlines()) == 1


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mutual-tls"])
async def test_two_node_https_cluster_replicates(
    tmp_path: Path, tls_files: dict[str, str], mutual: bool
) -> None:
    ports = [pick_free_port(), pick_free_port()]
    peers = [f"https://127.0.0.1:{port}" for port in ports]
    settings = {
        **tls_files,
        "peers": peers,
        "require_client_cert": mutual,
        "heart_beat_interval_in_seconds": 0.5,
        "max_retries_to_disabled_node": 2,
    }
    context = client_context(tls_files, with_cert=True)
    async with AsyncExitStack() as stack:
        for index, port in enumerate(ports):
            await stack.enter_async_context(
                tls_node(tmp_path / f"n{index}", port, settings, context)
            )
        async with httpx.AsyncClient(verify=context, timeout=5) as client:
            response = await client.post(f"{peers[0]}/set?key=k&ttl=0", content=b"over tls")
            assert response.status_code == 200
            with trio.fail_after(10):
                while (await client.get(f"{peers[1]}/get?key=k")).status_code != 200:
                    await trio.sleep(0.1)
            assert (await client.get(f"{peers[1]}/get?key=k")).content == b"over tls"
        if mutual:
            anonymous = client_context(tls_files, with_cert=False)
            async with httpx.AsyncClient(verify=anonymous, timeout=5) as client:
                with pytest.raises(httpx.TransportError):
                    await client.get(f"{peers[0]}/ping")


def test_a_tls_handshake_is_bounded_by_read_timeout(tls_files: dict[str, str]) -> None:
    # hypercorn's default, 60 s, let a client that never finished its
    # handshake hold a connection that long.
    settings = {"port": "127.0.0.1:1", "read_timeout": 2, **tls_files}
    assert hypercorn_config(Config.from_mapping(settings)).ssl_handshake_timeout == 2
