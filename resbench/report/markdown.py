"""report.md: GitHub-readable Markdown, images linked relative to the report's own folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from resbench.report.tables import Table, to_markdown
from resbench.report.verdict import Finding


@dataclass
class Section:
    heading: str
    blocks: list[str] = field(default_factory=list)  # Markdown paragraphs, tables, images

    def table(self, table: Table) -> None:
        self.blocks.append(to_markdown(table))

    def image(self, alt: str, file_name: str, caption: str = "") -> None:
        self.blocks.append(f"![{alt}]({quote(file_name)})" + (f"\n\n*{caption}*" if caption else ""))


def findings_lines(findings: Sequence[Finding]) -> list[str]:
    return [f"- **{f.verdict}** with {f.source} — {f.claim}. Measured {f.measured}, {f.comparison}: {f.value} "
            f"[{f.margin}]." + (f" To settle: `{f.settle}`." if f.settle else "") for f in findings]


def document(title: str, header: Sequence[str], warnings: Sequence[str], sections: Sequence[Section]) -> str:
    lines = [f"# {title}", "", *header, ""]
    if warnings:
        lines += ["## Warnings", "", *(f"- {warning}" for warning in warnings), ""]
    for section in sections:
        if not section.blocks:
            continue
        lines += [f"## {section.heading}", ""]
        for block in section.blocks:
            lines += [block, ""]
    return "\n".join(lines).rstrip() + "\n"
