"""``index.html`` of ``devmodel report`` (docs/report.md): one self-contained HTML5 page — inline CSS,
relative links to the PNG figures beside it, no script, no external resource, every text through
:func:`html.escape`.

A header (chip, technology, session file, the date it was taken, counts, g_max and t0, the fit-quality
verdicts), one section per figure with the card's fitted parameters of what it shows (standard errors,
bootstrap intervals where fitted with them), the validation table with failing rows marked, and what
the fit left out and why."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from devmodel import __version__
from devmodel.fit.validate import ValidationReport, validation_html
from devmodel.htmltable import esc as _e
from devmodel.htmltable import num as _num
from devmodel.htmltable import row as _row
from devmodel.htmltable import table as _table
from devmodel.model.card import DeviceModel
from devmodel.model.summary import POOR_FIT_P, fit_warnings, parameter_table, poor_fits
from devmodel.report.summary import SessionInfo, summarize
from devmodel.store.reader import Session

if TYPE_CHECKING:
    from devmodel.report.figures import Figure

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{margin:.3em 0}section{border-top:2px solid #ccc;margin-top:1.5em;padding-top:.5em}
table{border-collapse:collapse;margin:.5em 0}th,td{padding:2px 10px;border-bottom:1px solid #ddd}
th{text-align:left;background:#f3f3f3}td{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.facts td.key{font-weight:600}figure{margin:.5em 0}img{max-width:100%;height:auto}
figcaption{font-style:italic;color:#444}nav a{margin-right:1em}
tr.fail{background:#fdd}tr.fail td.mark{color:#a00;font-weight:bold}tr.noise{background:#fff6d6}
tr.zero td{color:#888}.pass{color:#060}.poor,.failed{color:#a00;font-weight:bold}
ul.warnings li{color:#a00}p.verdict{font-weight:bold}"""


def page(card: DeviceModel, session: Session, figures: Sequence[Figure], validation: ValidationReport | None,
         info: SessionInfo | None = None) -> str:
    """The whole page; ``figures`` are the :class:`~devmodel.report.figures.Figure` s of the PNGs
    written beside it."""
    info = info or summarize(session)
    sections = [_figure_section(card, fig) for fig in figures]
    sections += [_other_parameters(card, figures), _validation(validation), _excluded(card, session)]
    title = f"devmodel report: {_identity(session)} ({card.technology})"
    return "\n".join([
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>",
        _header(card, session, info, validation, title), _nav(figures),
        "<main>", *(s for s in sections if s), "</main>",
        f"<footer><p>Written by devmodel {_e(__version__)}.</p></footer>\n</body>\n</html>\n"])


# -- small helpers --------------------------------------------------------------------------------
def _anchor(name: str) -> str:
    return "fig-" + re.sub(r"[^A-Za-z0-9_-]", "-", Path(name).stem)


def _identity(session: Session) -> str:
    chip = session.chip if isinstance(session.chip, dict) else {}
    return str(chip.get("identity") or chip.get("url") or "unnamed chip")


def _when(iso) -> str:
    """An ISO time stamp as ``YYYY-MM-DD HH:MM:SS UTC``; as given when it does not parse."""
    try:
        t = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    return t.strftime("%Y-%m-%d %H:%M:%S ") + (t.tzname() or "(time zone not recorded)")


# -- header ---------------------------------------------------------------------------------------
def _header(card, session, info, validation, title) -> str:
    rows = [_row([(_e(k), "key"), (_e(v), cls)]) for k, v, cls in _facts(card, session, info, validation)]
    facts = _table(None, rows, "facts")
    return "\n".join([f"<header>\n<h1>{_e(title)}</h1>", facts, _fit_verdicts(card), "</header>"])


def _facts(card, session, info: SessionInfo, validation) -> list[tuple[str, str, str]]:
    """(name, text, CSS class) of the header's lines."""
    chip = session.chip if isinstance(session.chip, dict) else {}
    prov, cprov = session.provenance or {}, card.provenance or {}
    kind = " (simulated)" if chip.get("simulated") else ""
    status = info.status + (f": {session.status_reason}" if session.status_reason else "")
    facts = [("Chip", _identity(session) + kind)] + ([("Chip URL", chip["url"])] if chip.get("url") else [])
    facts += [("Technology", card.technology), ("Session file", f"{Path(info.path).name} ({status})"),
              ("Taken", _when(prov["start_utc"]) if prov.get("start_utc") else "not recorded"),
              ("Devices", f"{info.n_devices} in {len(info.levels)} levels; the fit used "
                          f"{cprov.get('n_devices_used', 'an unrecorded number')}"),
              ("Reads", f"{info.n_reads} ({info.n_bursts} read-noise bursts, {info.late_reads} late)"),
              ("g_max", f"{card.g_max_us:g} µS"), ("t0", f"{card.t0_s:g} s" + _t0_note(card, session))]
    if info.not_recorded:
        facts.append(("Not recorded", ", ".join(info.not_recorded)))
    facts += [("Card", _card_origin(cprov)), ("Fit quality", _fit_word(card))]
    return [(k, v, "") for k, v in facts] + [("Validation", *_verdict_word(validation))]


def _t0_note(card, session) -> str:
    return "" if abs(card.t0_s - session.t0_s) <= 1e-9 * session.t0_s else f" (session: {session.t0_s:g} s)"


def _card_origin(prov: dict) -> str:
    """Where the card came from: the session file it was fitted to (a card that records the file's
    checksum), or its source as it names it (a published card)."""
    if not prov.get("source_sha256"):
        return str(prov.get("source") or "not recorded")
    made = f", {_when(prov['created_utc'])}" if prov.get("created_utc") else ""
    tool = f", devmodel {prov['toolkit_version']}" if prov.get("toolkit_version") else ""
    return f"fitted to {Path(str(prov.get('source', '?'))).name}{made}{tool}"


def _verdict_word(validation: ValidationReport | None) -> tuple[str, str]:
    """The validation verdict in a few words, and its CSS class."""
    if validation is None:
        return "not run", ""
    if validation.worst() is None:
        return "compared nothing (too few held-out devices)", "failed"
    n = sum(validation.fails(r) for r in validation.rows)
    if validation.passed:
        return f"PASSED ({len(validation.rows)} comparisons)", "pass"
    return f"FAILED ({n} of {len(validation.rows)} comparisons)", "failed"


def _fit_word(card) -> str:
    found = poor_fits(card, float("inf"))
    poor = sum(p < POOR_FIT_P for _, _, p in found)
    if not found:
        return "no goodness of fit recorded"
    return (f"{poor} of {len(found)} fitted curves fit poorly (χ² p < {POOR_FIT_P:g})" if poor
            else f"all {len(found)} fitted curves fit (χ² p ≥ {POOR_FIT_P:g})")


def _fit_verdicts(card) -> str:
    """Goodness of fit per family of fitted curves (χ² p-value against POOR_FIT_P), the warnings
    with their remedies, and the card's notes."""
    families: dict[str, list[tuple[str, float | None, float]]] = {}
    for found in poor_fits(card, float("inf")):  # every curve with a χ² p-value
        families.setdefault(re.split(r"[.\[ ]", found[0])[0], []).append(found)
    if not families:
        body = "<p>The card records no goodness of fit (a published card, or no χ² test).</p>"
    else:
        body = _table(["curve", "curves", "worst", "χ²/dof", "p", "verdict"],
                      [_family_row(f, found) for f, found in families.items()])
    warnings = "".join(f"<li>{_e(w)}</li>" for w in fit_warnings(card))
    notes = "".join(f"<li>{_e(n)}</li>" for n in card.notes())
    return "\n".join(["<h2>Fit quality</h2>", body,
                      f'<ul class="warnings">{warnings}</ul>' if warnings else "",
                      f'<ul class="notes">{notes}</ul>' if notes else ""])


def _family_row(family: str, found: list[tuple[str, float | None, float]]) -> str:
    name, redchi, p = min(found, key=lambda f: f[2])
    poor = sum(f[2] < POOR_FIT_P for f in found)
    verdict = (f"✗ {poor} fit poorly" if len(found) > 1 else "✗ fits poorly") if poor else "✓ fits"
    return _row([_e(family), (str(len(found)), "num"), _e(name if len(found) > 1 else ""),
                 (_num(redchi, ".3g"), "num"), (_num(p, ".3g"), "num"),
                 (_e(verdict), "poor" if poor else "pass")], "fail" if poor else "")


def _nav(figures) -> str:
    links = [f'<a href="#{_anchor(f.name)}">{_e(f.heading)}</a>' for f in figures]
    links += ['<a href="#validation">Validation</a>', '<a href="#excluded">Left out</a>']
    return f"<nav>{''.join(links)}</nav>"


# -- one section per figure -----------------------------------------------------------------------
def _figure_section(card, fig: Figure) -> str:
    name, caption, curves = fig.name, fig.caption, fig.curves
    names = [k for k in card.scalars() if k.startswith(fig.parameters)] if fig.parameters else []
    return "\n".join([
        f'<section class="figure" id="{_anchor(name)}">\n<h2>{_e(fig.heading)}</h2>',
        f'<figure><img src="{_e(quote(name))}" alt="{_e(caption)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>",
        _curve_table(card, curves), _parameters(card, names), "</section>"])


def _curve_table(card, curves: Sequence[str]) -> str:
    rows = [_curve_row(label, q) for label, q in _curves(card.fit_quality, curves)]
    return (f"<h3>Goodness of fit</h3>\n{_table(['curve', 'points', 'free', 'χ²/dof', 'p', 'R²'], rows)}"
            if rows else "")


def _curves(fq: dict, names: Sequence[str]) -> list[tuple[str, dict]]:
    """(label, statistics) of the named fit_quality curves: one dict, or a dict of them by key."""
    out = []
    for name in names:
        q = fq.get(name)
        if isinstance(q, dict) and ("redchi" in q or "chi2_p" in q):
            out.append((name, q))
        elif isinstance(q, dict):
            out += [(f"{name} {k}", v) for k, v in q.items() if isinstance(v, dict) and "redchi" in v]
    return out


def _curve_row(label: str, q: dict) -> str:
    p = q.get("chi2_p")
    poor = isinstance(p, float) and p < POOR_FIT_P
    return _row([_e(label), (_num(q.get("n_points"), "d"), "num"), (_num(q.get("n_free"), "d"), "num"),
                 (_num(q.get("redchi"), ".3g"), "num"), (_num(p, ".3g"), "num"),
                 (_num(q.get("rsquared"), ".4f"), "num")], "fail" if poor else "")


def _parameters(card, names: Sequence[str], title: str = "Fitted parameters") -> str:
    return f"<h3>{_e(title)}</h3>\n{parameter_table(card, names)}" if names else ""


def _other_parameters(card, figures) -> str:
    """The fitted parameters no figure shows, in a section of their own."""
    claimed = tuple(p for f in figures for p in f.parameters)
    names = [k for k in card.scalars() if not (claimed and k.startswith(claimed))]
    if not names:
        return ""
    return "\n".join(['<section class="parameters" id="other-parameters">',
                      "<h2>Further fitted parameters</h2>",
                      _parameters(card, names, "Parameters no figure above shows"), "</section>"])


# -- validation -----------------------------------------------------------------------------------
def _validation(report: ValidationReport | None) -> str:
    head = '<section class="validation" id="validation">\n<h2>Validation</h2>'
    if report is None:
        return f"{head}\n<p>Not run for this report (devmodel report --no-validation).</p>\n</section>"
    return "\n".join([head, validation_html(report), "</section>"])


# -- what the fit left out ------------------------------------------------------------------------
def _excluded(card, session) -> str:
    rows = [_excluded_row("fit", what, reason, n) for what in ("devices", "reads")
            for reason, n in (card.fit_quality.get(f"excluded_{what}") or {}).items()]
    imported = session.config.get("import") if isinstance(session.config, dict) else None
    left = (imported or {}).get("left_out") or {}
    rows += [_excluded_row("import", key.split("_")[0], key, n) for key, n in left.items()]
    head = '<section class="excluded" id="excluded">\n<h2>Left out</h2>'
    if not rows:
        return (f"{head}\n<p>The card records nothing left out (a published card, or one fitted "
                "before these counts were kept).</p>\n</section>")
    return "\n".join([head, "<p>What the import and the fit left out of the session, and why "
                            "(reasons with a count of 0 are greyed).</p>",
                      _table(["stage", "what", "reason", "count"], rows, "excluded"), "</section>"])


def _excluded_row(stage: str, what: str, reason: str, n) -> str:
    return _row([_e(stage), _e(what), _e(reason.replace("_", " ")), (_num(n, "d"), "num")],
                "" if n else "zero")
