"""The OpenAPI document is valid and true: schemathesis against a live node.

A bounded number of generated requests per operation: no 5xx, and every
answer's status, content type and body match the document.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import pick_free_port
from test_serve_process import phoenix_command

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = json.loads((ROOT / "src" / "phoenix" / "openapi.json").read_text())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def node_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("openapi-node")
    port = pick_free_port()
    config = folder / "config.json"
    config.write_text(json.dumps({"port": f"127.0.0.1:{port}", "num_counters": 10_000}))
    url = f"http://127.0.0.1:{port}"
    with (folder / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            phoenix_command("serve", "--config", str(config)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=folder,
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("node did not start:\n" + (folder / "stderr.log").read_text())
                time.sleep(0.1)
            yield url
        finally:
            process.kill()
            process.wait(timeout=10)


def test_the_node_serves_its_document(node_url: str) -> None:
    response = httpx.get(f"{node_url}/openapi.json", timeout=5)
    assert response.status_code == 200
    assert response.json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_documented(node_url: str, case: schemathesis.Case) -> None:
    case.call_and_validate(base_url=node_url, checks=CHECKS, timeout=10)
