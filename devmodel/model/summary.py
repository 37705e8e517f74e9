"""The card as a scientist reads it: fitted parameters with standard errors and bootstrap intervals
(``devmodel fit``, ``devmodel demo``)."""

from __future__ import annotations

from typing import Any

from devmodel.htmltable import esc, num, row, table
from devmodel.model.card import DeviceModel

#: A fitted curve fits poorly when the χ² of its residuals against the points' standard errors has
#: a p-value below this (docs/physics.md, "Goodness of fit"): not sampling noise, the form or degree
#: misses the data.
POOR_FIT_P = 1e-3


def poor_fits(card: DeviceModel, p_min: float = POOR_FIT_P) -> list[tuple[str, float | None, float]]:
    """(curve, reduced χ², p) of every fitted curve in the card's fit_quality with p < ``p_min``;
    a curve is a dict holding ``chi2_p``, named by its path (``law_levels.3`` → its ``level_us``)."""
    out: list[tuple[str, float | None, float]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            p = node.get("chi2_p")
            if isinstance(p, float) and p < p_min:
                name = f"{path} at {node['level_us']:.4g} µS" if "level_us" in node else path
                out.append((name, node.get("redchi"), p))
            for k, v in node.items():
                if k not in ("options", "bootstrap"):
                    walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(card.fit_quality, "")
    return out


def fit_warnings(card: DeviceModel) -> list[str]:
    """One line per poorly fitting curve (per family of curves, e.g. the law's levels: how many and
    the worst), naming it and a remedy (the card's technology says which)."""
    families: dict[str, list[tuple[str, float | None, float]]] = {}
    for found in poor_fits(card):
        families.setdefault(found[0].split(".")[0].split("[")[0].split(" ")[0], []).append(found)
    lines = []
    for family, found in families.items():
        name, redchi, p = min(found, key=lambda f: f[2])
        chi = f"χ²/dof = {redchi:.2f}, " if redchi is not None else ""
        where = name if len(found) == 1 else f"{family} ({len(found)} curves; worst {name})"
        lines.append(f"warning: {where} fits poorly ({chi}p = {p:.2g} < {POOR_FIT_P:g}); "
                     f"{card.remedy(family)}")
    return lines


def parameter_table(card: DeviceModel, names) -> str:
    """The fitted parameters ``names`` (``card.scalars()`` keys) as an HTML table: value, standard
    error and the 95 % bootstrap interval where fitted with one; more than 30 rows folded."""
    values, errors = card.scalars(), card.stderrs()
    boot = (card.fit_quality.get("bootstrap") or {}).get("intervals_95") or {}
    header = ["parameter", "value", "standard error"] + (["95 % bootstrap"] if boot else [])
    rows = [row([esc(k), (num(values[k]), "num"), (num(errors.get(k), ".3g"), "num")]
                + ([(_interval(boot.get(k)), "num")] if boot else [])) for k in names]
    out = table(header, rows, "parameters")
    if len(rows) > 30:  # a law's quantiles per level: folded, the page stays readable
        out = f"<details><summary>{len(rows)} parameters</summary>\n{out}\n</details>"
    return out


def _interval(b) -> str:
    return f"[{b[0]:.4g}, {b[1]:.4g}]" if b else "—"


def card_html(card: DeviceModel) -> str:
    """The card as HTML (a notebook's summary, docs/notebook.md): its header line, the fitted
    parameters (value ± standard error) as a table, then the notes, what the fit left out and the
    fit warnings."""
    lines = format_card(card).splitlines()
    rest = [*card.notes(), *_left_out(card), *fit_warnings(card)]
    source = card.provenance.get("source")
    if source:
        rest.append(f"source: {source}")
    items = "".join(f"<li>{esc(line.strip())}</li>" for line in rest)
    return (f"<p><b>{esc(lines[0])}</b> — fitted parameters, value ± standard error:</p>"
            + parameter_table(card, list(card.scalars())) + (f"<ul>{items}</ul>" if items else ""))


def _left_out(card: DeviceModel) -> list[str]:
    lines = []
    for what in ("devices", "reads"):
        counts = {k: v for k, v in (card.fit_quality.get(f"excluded_{what}") or {}).items() if v}
        if counts:
            lines.append(f"  {what} left out: " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                                           for k, v in counts.items()))
    return lines


def format_card(card: DeviceModel) -> str:
    """Fitted parameters with standard errors (and 95 % bootstrap intervals when fitted with them)."""
    boot = card.fit_quality.get("bootstrap", {}).get("intervals_95", {})
    n = card.provenance.get("n_devices_used")
    lines = [f"device model ({card.technology}, g_max {card.g_max_us:g} µS, t0 {card.t0_s:g} s) "
             + (f"from {n} devices" if n is not None else "(published, not fitted here)")]
    lines += card.parameter_lines(boot)
    lines += [f"  {note}" for note in card.notes()]
    lines += _left_out(card)
    lines += fit_warnings(card)
    return "\n".join(lines)
