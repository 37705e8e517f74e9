"""The HTML page of ``devmodel report`` (docs/report.md): its structure, parsed with ``html.parser``
(balanced tags, no Python reprs, the header's facts, one section per figure, the validation table
with its failing rows marked, what the fit left out), and the page as headless Chromium renders it
(skipped, saying why, where Chromium is not installed)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from devmodel.commands import main
from devmodel.fit.session import fit_session
from devmodel.fit.validate import validate
from devmodel.model.card import DeviceModel
from devmodel.report import html as report_html
from devmodel.report.figures import write_report
from devmodel.report.summary import summarize
from devmodel.store import read_session

DATA = Path(__file__).resolve().parents[1] / "calibration_data"
SESSION = DATA / "pcm_sample.h5"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict, parent: Node | None):
        self.tag, self.attrs, self.parent, self.children, self.text = tag, attrs, parent, [], ""

    def all(self, tag: str) -> list[Node]:
        found = []
        for c in self.children:
            found += ([c] if c.tag == tag else []) + c.all(tag)
        return found

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def full_text(self) -> str:
        return self.text + "".join(c.full_text() for c in self.children)


class Tree(HTMLParser):
    """The page as a tree; refuses unbalanced tags and end tags of void elements."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = self.node = Node("#root", {}, None)
        self.doctype = None
        self.feed(text)
        self.close()
        assert self.node is self.root, f"<{self.node.tag}> is never closed"

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.node)
        self.node.children.append(node)
        if tag not in VOID:
            self.node = node

    def handle_startendtag(self, tag, attrs):
        self.node.children.append(Node(tag, dict(attrs), self.node))

    def handle_endtag(self, tag):
        assert tag not in VOID, f"</{tag}>: a void element has no end tag"
        assert tag == self.node.tag, f"</{tag}> closes <{self.node.tag}>"
        self.node = self.node.parent

    def handle_data(self, data):
        self.node.text += data


def wrong_card() -> DeviceModel:
    """The published PCM card with twice its drift floor: a card the sample must fail on."""
    d = DeviceModel.published("pcm").to_dict()
    d["drift"]["nu_mean"]["lo"] = d["drift"]["nu_mean"]["hi"] = 0.1
    return DeviceModel.from_dict(d)


@pytest.fixture(scope="module")
def pcm(tmp_path_factory):
    """A card fitted to the PCM sample, its report validated against a deliberately wrong card."""
    tmp = tmp_path_factory.mktemp("report")
    session = read_session(SESSION, with_trace=False)
    card = fit_session(session)
    (tmp / "card.json").write_text(card.to_json(), encoding="utf-8")
    val = validate(wrong_card(), session)
    page = write_report(card, session, tmp / "out", val)
    text = page.read_text("utf-8")
    return SimpleNamespace(tmp=tmp, session=session, card=card, validation=val, page=page, text=text,
                           tree=Tree(text))


def rows_of(table: Node) -> list[Node]:
    return [r for r in table.all("tr") if r.all("td")]


def test_the_page_is_well_formed_and_self_contained(pcm):
    tree = pcm.tree
    assert pcm.text.startswith("<!doctype html>") and tree.doctype.lower() == "doctype html"
    assert [c.tag for c in tree.root.children] == ["html"]
    assert tree.root.all("meta")[0].attrs.get("charset") == "utf-8"
    assert len(tree.root.all("title")) == 1 and tree.root.all("style")
    for tag in ("script", "link", "iframe", "object", "embed"):
        assert not tree.root.all(tag), f"<{tag}> in a self-contained page"
    for node in tree.root.all("img") + tree.root.all("a"):
        ref = node.attrs.get("src") or node.attrs.get("href") or ""
        assert "://" not in ref and not ref.startswith("//"), ref
    assert "on" not in {k[:2] for n in _all(tree.root) for k in n.attrs}  # no event handlers
    assert "url(" not in pcm.text and "@import" not in pcm.text


def _all(node: Node) -> list[Node]:
    return [node] + [d for c in node.children for d in _all(c)]


def test_no_python_reprs(pcm):
    for repr_mark in ("Session(", "array(", "dtype", "PosixPath(", "{'", "np.float64", "None"):
        assert repr_mark not in pcm.text, repr_mark


def test_the_header_states_the_facts(pcm):
    header = pcm.tree.root.all("header")[0]
    facts = {r.all("td")[0].full_text(): r.all("td")[1].full_text() for r in rows_of(header.all("table")[0])}
    info = summarize(pcm.session)
    assert facts["Chip"] == "devmodel,SIM-PCM,7,0.1.0 (simulated)"
    assert facts["Technology"] == "pcm"
    assert facts["Session file"] == "pcm_sample.h5 (complete)"
    assert facts["Taken"] == "2026-11-23 13:58:52 UTC"  # the session's provenance start_utc
    assert facts["Devices"].startswith(f"{info.n_devices} in {len(info.levels)} levels")
    assert str(pcm.card.provenance["n_devices_used"]) in facts["Devices"]
    assert facts["Reads"].startswith(str(info.n_reads))
    assert facts["g_max"] == "25 µS" and facts["t0"] == "20 s"
    assert facts["Fit quality"].startswith("all 4 fitted curves fit")
    assert facts["Validation"].startswith("FAILED")
    verdicts = [r.all("td")[0].full_text() for r in rows_of(header.all("table")[1])]
    assert verdicts == ["sigma_prog", "mean_offset", "nu_mean", "nu_std"]
    assert "held at the published value" in header.full_text()


def test_one_section_per_figure_with_its_parameters(pcm):
    sections = [s for s in pcm.tree.root.all("section") if "figure" in s.classes]
    names = [s.all("img")[0].attrs["src"] for s in sections]
    assert names == ["cdf_t0.png", "sigma_prog.png", "drift.png", "nu.png", "q_s.png"]
    for s in sections:
        (img,) = s.all("img")
        assert (pcm.page.parent / img.attrs["src"]).stat().st_size > 1000
        assert img.attrs["alt"] and s.all("figcaption")[0].full_text() == img.attrs["alt"]
    params = {}
    for s in sections:
        for t in s.all("table"):
            if "parameters" in t.classes:
                params |= {r.all("td")[0].full_text(): [td.full_text() for td in r.all("td")[1:]]
                           for r in rows_of(t)}
    values, errors = pcm.card.scalars(), pcm.card.stderrs()
    assert set(params) == set(values)  # every fitted parameter is shown beside a figure
    for k, (value, err) in params.items():
        assert float(value) == pytest.approx(values[k], rel=1e-5)
        assert float(err) == pytest.approx(errors[k], rel=1e-2)


def test_the_validation_table_marks_failing_rows(pcm):
    (section,) = [s for s in pcm.tree.root.all("section") if s.attrs.get("id") == "validation"]
    (table,) = [t for t in section.all("table") if "validation" in t.classes]
    rows, report = rows_of(table), pcm.validation
    assert len(rows) == len(report.rows)
    failing = [r for r in report.rows if report.fails(r)]
    assert 0 < len(failing) < len(rows)  # a mix: only the failing ones are marked
    for tr, r in zip(rows, report.rows, strict=True):
        mark = tr.all("td")[-1].full_text()
        assert ("fail" in tr.classes) == report.fails(r) == ("FAIL" in mark)
        assert float(tr.all("td")[3].full_text()) == pytest.approx(r.ks, abs=1e-4)
    verdict = [p for p in section.all("p") if "verdict" in p.classes]
    assert verdict and verdict[0].full_text().startswith("FAILED: largest gated KS")


def test_the_excluded_reads_table(pcm):
    (section,) = [s for s in pcm.tree.root.all("section") if s.attrs.get("id") == "excluded"]
    rows = [[td.full_text() for td in r.all("td")] for r in rows_of(section.all("table")[0])]
    fq = pcm.card.fit_quality
    expected = [["fit", what, k.replace("_", " "), str(n)] for what in ("devices", "reads")
                for k, n in fq[f"excluded_{what}"].items()]
    assert rows == expected
    assert ["fit", "devices", "not converged", "25"] in rows
    assert ["fit", "reads", "reads of excluded devices", "175"] in rows


def test_text_from_the_files_is_escaped(pcm):
    info = summarize(pcm.session)
    evil = dataclasses.replace(pcm.session, chip={"identity": '<script>alert("x")</script> & co'})
    from devmodel.report.figures import Figure

    text = report_html.page(pcm.card, evil, [Figure("a<b>.png", 'caption <i>"q"</i>')], None, info=info)
    tree = Tree(text)
    assert "<script>" not in text and "&lt;script&gt;" in text and "<i>" not in text
    assert tree.root.all("img")[0].attrs["src"] == "a%3Cb%3E.png"
    assert not tree.root.all("script")


def test_the_cli_writes_the_page_without_validation(pcm):
    out = pcm.tmp / "cli"
    res = CliRunner().invoke(main, ["report", str(pcm.tmp / "card.json"), str(SESSION), "--out", str(out),
                                    "--no-validation"])
    assert res.exit_code == 0, res.output
    text = (out / "index.html").read_text("utf-8")
    tree = Tree(text)
    assert "Not run for this report" in text and "Session(" not in text
    assert len([s for s in tree.root.all("section") if "figure" in s.classes]) == 5


@pytest.mark.filterwarnings("ignore:No artists with labels:UserWarning")  # a law card has no snapshots
def test_an_imported_relaxation_law_card(tmp_path):
    """The measured ReRAM table: what the import left out, what was not recorded, a folded law."""
    session = read_session(DATA / "rram_techB" / "session.h5", with_trace=False)
    card = DeviceModel.load(DATA / "rram_techB" / "card.json")
    text = write_report(card, session, tmp_path, None).read_text("utf-8")
    tree = Tree(text)
    assert "imported from relaxation_subset.tsv.gz" in text and "Session(" not in text
    assert "convergence, verify iterations" in text
    assert "law_levels" in text and "fit poorly" in text
    assert tree.root.all("details")  # 193 quantiles, folded
    excluded = [s for s in tree.root.all("section") if s.attrs.get("id") == "excluded"][0]
    rows = [[td.full_text() for td in r.all("td")] for r in rows_of(excluded.all("table")[0])]
    assert ["import", "devices", "devices beyond g max", "142"] in rows
    assert ["fit", "devices", "held out", "1452"] in rows


# -- rendered by a real browser ---------------------------------------------------------------------
def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium): the report page "
                    "is not rendered")
    return exe


def screenshot(page: Path, tmp: Path) -> np.ndarray:
    """The page at 1200 × 2000 as headless Chromium draws it (RGB in [0, 1]); its process group is
    killed afterwards, so no browser process outlives the test."""
    shot, log = tmp / "shot.png", tmp / "chromium.log"
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--window-size=1200,2000", f"--user-data-dir={tmp / 'profile'}", f"--screenshot={shot}",
           page.resolve().as_uri()]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=tmp, start_new_session=True)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    tail = log.read_text("utf-8", "replace")[-2000:]
    assert code == 0, f"chromium exited with {code}: {tail}"
    assert shot.exists(), f"chromium wrote no screenshot: {tail}"
    import matplotlib.image

    return matplotlib.image.imread(shot)[..., :3].astype(float)


def colour_pixels(rgb: np.ndarray) -> np.ndarray:
    """Pixels whose channels differ noticeably (grey text and rules do not)."""
    return (rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25


def tallest_colour_block(rgb: np.ndarray) -> int:
    """The longest run of consecutive pixel rows holding colour pixels: a figure is hundreds of rows
    tall, a line of coloured text (links, verdicts) about twenty."""
    best = run = 0
    for has_colour in colour_pixels(rgb).any(axis=1):
        run = run + 1 if has_colour else 0
        best = max(best, run)
    return best


def test_chromium_renders_the_page_with_its_figures(pcm, tmp_path):
    rgb = screenshot(pcm.page, tmp_path)
    assert rgb.shape == (2000, 1200, 3)
    ink = (rgb < 0.9).any(axis=-1)
    assert rgb.std() > 0.05 and ink.mean() > 0.02, (rgb.std(), ink.mean())  # not blank
    assert colour_pixels(rgb).sum() > 5000
    assert tallest_colour_block(rgb) > 150  # the figures were loaded, not only text drawn
    # the control: the same page without its PNGs beside it draws only text and alt texts
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "index.html").write_text(pcm.text, encoding="utf-8")
    assert tallest_colour_block(screenshot(bare / "index.html", bare)) < 50
