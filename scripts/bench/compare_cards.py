"""Compare two cards parameter by parameter within their stated uncertainties (issue 17: the card of a
10⁸-device session against the in-memory fit of a 10⁶-device subset).

    python scripts/bench/compare_cards.py big.json subset.json

Prints each scalar, both standard errors and z = (a − b)/√(se_a² + se_b²) (parameters without a
standard error in either card are shown without z; they were held, not fitted).
"""

from __future__ import annotations

import math
import sys


def main() -> None:
    from devmodel.model.card import DeviceModel

    a, b = (DeviceModel.load(p) for p in sys.argv[1:3])
    sa, sb, ea, eb = a.scalars(), b.scalars(), a.stderrs(), b.stderrs()
    print(f"{'parameter':<28}{'A':>13}{'B':>13}{'se A':>11}{'se B':>11}{'z':>7}")
    zs = []
    for k in sorted(set(sa) & set(sb)):
        se = [e.get(k) for e in (ea, eb)]
        z = None
        if all(s is not None and math.isfinite(s) for s in se) and (se[0] ** 2 + se[1] ** 2) > 0:
            z = (sa[k] - sb[k]) / math.sqrt(se[0] ** 2 + se[1] ** 2)
            zs.append(abs(z))
        fmt = lambda s: f"{s:.3g}" if s is not None else "—"  # noqa: E731
        print(f"{k:<28}{sa[k]:>13.6g}{sb[k]:>13.6g}{fmt(se[0]):>11}{fmt(se[1]):>11}"
              f"{(f'{z:+.2f}' if z is not None else '—'):>7}")
    if zs:
        print(f"max |z| = {max(zs):.2f} over {len(zs)} parameters with standard errors "
              f"({sum(z <= 2 for z in zs)} within 2, {sum(z <= 3 for z in zs)} within 3)")


if __name__ == "__main__":
    main()
