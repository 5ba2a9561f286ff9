"""Log lines of a node: one line per event, as `key=value` text or as JSON.

    ts=2026-11-25T10:00:00.123Z level=info node=n1 logger=phoenix msg="node n1 ready"
    {"ts": "2026-11-25T10:00:00.123Z", "level": "info", "node": "n1", ...}

`configure(level, "text" | "json")` sends every record to stderr through one
handler; `show_node_id(node_id)` puts the node's id on every line once the
node exists (before that, `node=-`). A traceback travels in the same line
(field `exc`), so a line is always one event.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

FORMATS = ("text", "json")
NO_NODE = "-"


class NodeIdFilter(logging.Filter):
    """Adds the node's id to every record that passes (`record.node`)."""

    def __init__(self, node_id: str = NO_NODE) -> None:
        super().__init__()
        self.node_id = node_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node_id
        return True


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """What a line says, in order: time, level, node, logger, message (and traceback)."""
    ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
    line: dict[str, Any] = {
        "ts": ts.replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "node": getattr(record, "node", NO_NODE),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    if record.exc_info:
        line["exc"] = logging.Formatter().formatException(record.exc_info)
    return line


class TextFormatter(logging.Formatter):
    """`key=value` pairs; a value with a space, `=` or `"` is quoted, JSON-style."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_text_value(value)}" for key, value in fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the fields of the text format."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record), ensure_ascii=False)


def _text_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\\') and text.isprintable():
        return text
    return json.dumps(text, ensure_ascii=False)


def configure(level: str, log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to `stream` (stderr) in `log_format`; return the handler."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(NodeIdFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def show_node_id(node_id: str) -> None:
    """From now on, every line says `node_id` (on the handlers `configure` set up)."""
    for handler in logging.getLogger().handlers:
        for log_filter in handler.filters:
            if isinstance(log_filter, NodeIdFilter):
                log_filter.node_id = node_id
