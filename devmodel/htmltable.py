"""Escaped HTML tables: what the report page (devmodel.report.html) and the notebook summaries of
cards and validation results (``_repr_html_``) build their tables from."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def num(value, fmt: str = ".6g") -> str:
    """A number as text; None or NaN as a dash."""
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return format(int(value), fmt) if fmt == "d" else format(value, fmt)


def row(cells: Iterable, cls: str = "", head: bool = False) -> str:
    """One table row of already escaped cells; a cell given as (text, class) gets that class."""
    tag = "th" if head else "td"
    out = []
    for c in cells:
        text, c_cls = c if isinstance(c, tuple) else (c, "")
        out.append(f'<{tag} class="{c_cls}">{text}</{tag}>' if c_cls else f"<{tag}>{text}</{tag}>")
    attr = f' class="{cls}"' if cls else ""
    return f"<tr{attr}>{''.join(out)}</tr>"


def table(header: Sequence[str] | None, rows: Sequence[str], cls: str = "") -> str:
    """A table of already built rows under a header row (None: none)."""
    attr = f' class="{cls}"' if cls else ""
    head = f"<thead>{row(map(esc, header), head=True)}</thead>\n" if header else ""
    return f"<table{attr}>\n{head}<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"
