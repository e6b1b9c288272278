"""Each benchmark's figures go into its own section of bench/README.md; the other sections are left alone."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def write_section(name: str, title: str, lines: list[str], intro: str = "") -> None:
    """Put `lines` between the `<!-- {name}:begin -->` and `<!-- {name}:end -->` markers of bench/README.md;
    a README without them gets a new `## {title}` section at its end, `intro` above the figures."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    body = "\n".join([begin, *lines, end])
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + body + rest.split(end, 1)[1]
    else:
        preface = f"{intro}\n\n" if intro else ""
        text = text.rstrip("\n") + f"\n\n## {title}\n\n" + preface + body + "\n"
    README.write_text(text)
