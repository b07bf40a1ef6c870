"""docs/policy.md lists every rule id the code cites, so no rule the code enforces is undocumented."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "policy.md"
SOURCES = [ROOT / "shared" / "src", *sorted((ROOT / "services").glob("*/src"))]
# A rule id: R- and upper-case words, not the tail of a longer token (e.g. not "ERR-1" or "SKU-R-2").
RULE_ID = re.compile(r"(?<![A-Za-z0-9_-])R-[A-Z0-9]+(?:-[A-Z0-9]+)*\b")
# A rule's entry on the page: a heading that starts with its id.
ENTRY = re.compile(r"^#{2,4} (R-[A-Z0-9]+(?:-[A-Z0-9]+)*)\b", re.MULTILINE)


def cited_ids(roots: list[Path]) -> dict[str, set[str]]:
    """Every rule id in the source files under `roots`, with the files that cite it."""
    cited: dict[str, set[str]] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix not in {".py", ".ts", ".tsx", ".sql"} or "node_modules" in path.parts:
                continue
            for rule in RULE_ID.findall(path.read_text(encoding="utf-8")):
                cited.setdefault(rule, set()).add(str(path.relative_to(root)))
    return cited


def documented_ids(page: str) -> set[str]:
    return set(ENTRY.findall(page))


def test_every_cited_rule_id_has_an_entry_on_the_policy_page() -> None:
    cited = cited_ids(SOURCES)
    missing = {
        rule: sorted(files) for rule, files in cited.items() if rule not in documented_ids(PAGE.read_text())
    }
    assert not missing, f"docs/policy.md has no entry (a '### R-…' heading) for {missing}"


def test_the_scan_finds_the_rules_the_policy_engine_enforces() -> None:
    cited = cited_ids(SOURCES)
    for rule in (
        "R-7D-WINDOW",
        "R-COMP-CAP",
        "R-EXCHANGE-ONCE",
        "R-RESALEABLE",
        "R-EVIDENCE",
        "R-USAGE",
        "R-INSPECT",
    ):
        assert rule in cited, rule


def test_an_id_cited_in_code_but_absent_from_the_page_is_reported(tmp_path: Path) -> None:
    (tmp_path / "rule.py").write_text(
        "# R-NEW-RULE: enforced here; not ERR-1, nor SKU-R-2\nX = 'R-7D-WINDOW'\n"
    )
    cited = cited_ids([tmp_path])
    assert set(cited) == {"R-NEW-RULE", "R-7D-WINDOW"}
    assert set(cited) - documented_ids("### R-7D-WINDOW: the window\nsee R-NEW-RULE in text\n") == {
        "R-NEW-RULE"
    }
