"""docs/notebook.md, executed: every ```python block in order in one namespace, as a notebook runs
its cells; the objects a cell ends on have HTML summaries (``_repr_html_``) that say what they are."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

PAGE = Path(__file__).parent.parent / "docs" / "notebook.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text("utf-8"), flags=re.S)


class _Balance(HTMLParser):
    VOID = {"br", "img", "hr", "meta", "col", "input", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-3:])
        self.stack.pop()


def well_formed(html: str) -> str:
    p = _Balance()
    p.feed(html)
    p.close()
    assert p.stack == [], p.stack
    return html


@pytest.fixture(scope="module")
def namespace():
    pytest.importorskip("xarray")
    ns: dict = {}
    for code in blocks():
        exec(compile(code, str(PAGE), "exec"), ns)  # noqa: S102 - our own documentation
    return ns


def test_the_page_has_the_whole_loop():
    text = "\n".join(blocks())
    for step in ("new_session", "fit_session", "validate(", "open_xarray", "evaluate_over_time"):
        assert step in text


def test_session_card_and_report_show_html_summaries(namespace):
    s = well_formed(namespace["session"]._repr_html_())
    assert "pcm" in s and "complete" in s and "<table" in s and "array(" not in s
    c = well_formed(namespace["card"]._repr_html_())
    assert "device model" in c.lower() and "±" in c and "<table" in c
    r = well_formed(namespace["report"]._repr_html_())
    assert ("PASSED" in r or "FAILED" in r) and "<table" in r and "KS" in r


def test_the_evaluation_ran(namespace):
    acc = namespace["acc"]
    assert acc.shape == (3, 3) and 0.5 < acc.mean() <= 1.0
