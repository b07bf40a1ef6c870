"""Write the JSON Schema of every event payload and of the envelope, and the catalogue of event types
(README.md, from aftersales_shared.contracts), to docs/events/ (make schemas)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aftersales_shared import contracts, topics
from aftersales_shared.events import CloudEvent

OUT = Path(__file__).resolve().parents[1] / "docs" / "events"


def render() -> dict[str, str]:
    files = {"cloudevent.json": CloudEvent.model_json_schema()}
    for contract in contracts.REGISTRY.values():
        schema = contract.payload.model_json_schema(mode="serialization")
        schema["x-topic"] = contract.topic
        files[f"{contract.topic}.{contract.payload.__name__}.json"] = schema
    texts = {name: json.dumps(schema, indent=2, ensure_ascii=False) + "\n" for name, schema in files.items()}
    return {"README.md": catalogue(), **texts}


def catalogue() -> str:
    lines = [
        "# Event types",
        "",
        "Generated from `aftersales_shared.contracts` by `make schemas`; do not edit. Every event travels in",
        "a CloudEvents 1.0 envelope (`cloudevent.json`); its `data` is the payload named here, whose JSON",
        "Schema is `<topic>.<payload>.json`. The Kafka message key is the payload field named under *key*.",
        "*Read outside* names the readers outside this repository; the services' own consumers are in their",
        "`consumers.py`.",
        "",
        "| type | payload | topic | key | producer | read outside |",
        "|---|---|---|---|---|---|",
    ]
    for c in contracts.REGISTRY.values():
        producer = "warehouse systems" if c.producer == topics.WAREHOUSE else c.producer
        readers = "; ".join(c.readers) or "—"
        lines.append(
            f"| `{c.type}` | {c.payload.__name__} | `{c.topic}` | `{c.key}` | {producer} | {readers} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    """Write the files; with --check, fail if they are out of date instead."""
    files = render()
    if "--check" in sys.argv:
        stale = [n for n, text in files.items() if not (OUT / n).exists() or (OUT / n).read_text() != text]
        print("\n".join(f"stale: docs/events/{n}" for n in stale) or "docs/events is up to date")
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT / name).write_text(text)
    print(f"wrote {len(files)} schemas to docs/events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
