"""The curl examples of README.md and docs/*.md, run against real nodes in document order.

Each fenced code block that starts with `curl` is an example; each of its
`curl` lines is parsed with shlex and replayed with httpx (so the test needs
nothing but Python), against three `phoenix serve` processes on free ports
(three, so that `sync=2` can be met), with 127.0.0.1:8080 rewritten to the
first one. Every example, as written, must answer 2xx.

The examples of docs/client.md and docs/cli.md are run by tests/test_client.py
and tests/test_cli_client.py.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import attrs
import httpx
import pytest

from test_client import node_processes, start_cluster

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED_URL = "127.0.0.1:8080"
CLUSTER_TIMEOUT = 15.0


def documents() -> list[Path]:
    """README.md, then the guide's pages: index first, the others by name."""
    pages = sorted((ROOT / "docs").glob("*.md"), key=lambda page: (page.name != "index.md", page))
    return [ROOT / "README.md", *pages]


@attrs.frozen
class Example:
    where: str  # path:line
    command: str


def curl_examples(path: Path) -> list[Example]:
    """Every `curl` line of the fenced blocks of `path` whose first line is a curl command."""
    text = path.read_text(encoding="utf-8")
    examples: list[Example] = []
    for block in re.finditer(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        body = block.group(1)
        if not body.lstrip().startswith("curl "):
            continue
        first_line = text.count("\n", 0, block.start(1)) + 1
        for offset, line in enumerate(body.replace("\\\n", " ").splitlines()):
            if line.startswith("curl "):
                where = f"{path.relative_to(ROOT)}:{first_line + offset}"
                examples.append(Example(where, line))
    return examples


def curl_request(command: str) -> httpx.Request:
    """The request curl would send for `command`: -X, -H, -d/--data/--data-binary, -i, the URL."""
    words = shlex.split(command)
    assert words[0] == "curl", command
    method: str | None = None
    headers = httpx.Headers()
    body: bytes | None = None
    url: str | None = None
    options = iter(words[1:])
    for word in options:
        if word in ("-X", "--request"):
            method = next(options)
        elif word in ("-H", "--header"):
            name, _, value = next(options).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data", "--data-binary"):
            data = next(options)
            if data.startswith("@"):
                raise ValueError(f"data from a file is not supported: {command}")
            body = data.encode("utf-8")
        elif word in ("-i", "--include"):
            pass  # shows the answer's headers: nothing to send
        elif word.startswith("-"):
            raise ValueError(f"curl option {word} is not supported here: {command}")
        elif url is None:
            url = word
        else:
            raise ValueError(f"more than one URL: {command}")
    if url is None:
        raise ValueError(f"no URL: {command}")
    if body is not None and "content-type" not in headers:
        headers["Content-Type"] = "application/x-www-form-urlencoded"  # curl's default
    return httpx.Request(
        method or ("GET" if body is None else "POST"), url, headers=headers, content=body
    )


def test_curl_lines_become_the_requests_curl_would_send() -> None:
    request = curl_request(
        "curl -i -X PUT 'http://h:1/set?key=a b&ttl=0' -H 'Content-Type: text/plain' "
        "--data-binary 'x y'"
    )
    assert (request.method, request.url.path, request.url.params["key"]) == ("PUT", "/set", "a b")
    assert request.headers["content-type"] == "text/plain"
    assert request.content == b"x y"
    posted = curl_request("curl http://h:1/getKeys -d '[\"a\"]'")
    assert posted.method == "POST"
    assert posted.headers["content-type"] == "application/x-www-form-urlencoded"
    assert curl_request("curl http://h:1/ping").method == "GET"
    with pytest.raises(ValueError, match="--user"):
        curl_request("curl --user a:b http://h:1/ping")


def test_every_curl_example_in_the_docs_answers_2xx(tmp_path: Path) -> None:
    examples = [example for path in documents() for example in curl_examples(path)]
    assert len(examples) > 15, examples
    assert any(example.where.startswith("docs/api.md") for example in examples)
    with node_processes(tmp_path) as nodes:
        urls = start_cluster(nodes, ("docs1", "docs2", "docs3"))
        peers_are_up(urls[0], 2)
        port = urls[0].rsplit(":", 1)[1]
        failures: list[str] = []
        with httpx.Client(timeout=10) as http:
            for example in examples:
                command = example.command.replace(DOCUMENTED_URL, f"127.0.0.1:{port}")
                response = http.send(curl_request(command))
                if not response.is_success:
                    failures.append(
                        f"{example.where}: {example.command}\n"
                        f"  -> {response.status_code} {response.text[:200]}"
                    )
        assert not failures, "\n".join(failures) + "\n" + nodes.logs()


def peers_are_up(url: str, count: int) -> None:
    """Until the node sees `count` peers up (so that `sync=N` up to count can be met)."""
    deadline = time.monotonic() + CLUSTER_TIMEOUT
    with httpx.Client(timeout=2) as http:
        while (
            sum(peer["state"] == "up" for peer in http.get(f"{url}/cluster").json()["peers"])
            < count
        ):
            if time.monotonic() > deadline:
                pytest.fail(f"{url} does not see {count} peers up within {CLUSTER_TIMEOUT} s")
            time.sleep(0.05)
