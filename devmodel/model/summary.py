"""The card as a scientist reads it: fitted parameters with standard errors and bootstrap intervals
(``devmodel fit``, ``devmodel demo``)."""

from __future__ import annotations

from devmodel.model.card import DeviceModel


def format_card(card: DeviceModel) -> str:
    """Fitted parameters with standard errors (and 95 % bootstrap intervals when fitted with them)."""
    boot = card.fit_quality.get("bootstrap", {}).get("intervals_95", {})
    lines = [f"device model ({card.technology}, g_max {card.g_max_us:g} µS, t0 {card.t0_s:g} s) "
             f"from {card.provenance.get('n_devices_used', '?')} devices"]
    lines += card.parameter_lines(boot)
    lines += [f"  {note}" for note in card.notes()]
    excl = card.fit_quality.get("excluded_devices")
    if excl:
        lines.append(f"  excluded devices: {excl}")
    return "\n".join(lines)
