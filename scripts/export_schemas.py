"""Write the JSON Schema of every event payload and of the envelope to docs/events/ (make schemas)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aftersales_shared.events import SCHEMAS, CloudEvent

OUT = Path(__file__).resolve().parents[1] / "docs" / "events"


def render() -> dict[str, str]:
    files = {"cloudevent.json": CloudEvent.model_json_schema()}
    for topic, models in SCHEMAS.items():
        for model in models:
            schema = model.model_json_schema(mode="serialization")
            schema["x-topic"] = topic
            files[f"{topic}.{model.__name__}.json"] = schema
    return {name: json.dumps(schema, indent=2, ensure_ascii=False) + "\n" for name, schema in files.items()}


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
