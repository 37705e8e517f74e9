"""Issue 16 acceptance (docs/deployment.md): the commands, run as real `devmodel` processes, and
their printed figures. Cards are fitted here from characterisation sessions on the same simulated
chips (the workflow the deployment checks); every chip and network has a fixed seed.

    PYTHONPATH=. python scripts/acceptance/deploy_issue16.py OUTDIR [--only NAME ...]

Steps: cards (characterize + fit, PCM and ReRAM) → digits-cnn on sim:pcm and sim:reram (evaluate
with and without drift compensation) → wrong cards (a chip with 2× programming spread; a deployment
programmed with a 4× looser verify tolerance; the published PCM card) → train-hwa noise-001 vs FP,
deployed and measured.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

CHIP_N = 131072
PCM_SCHEDULE = "21,3620,86420"  # t = 1 s, 1 h, 1 day after t0 = 20 s (docs/deployment.md)
RERAM_SCHEDULE = "1,3600,86400"


def devmodel(*args: str, out: Path | None = None) -> str:
    cmd = [sys.executable, "-m", "devmodel", *map(str, args)]
    print("$ devmodel " + " ".join(map(str, args)), flush=True)
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    text = r.stdout + (r.stderr if r.returncode else "")
    print(text.rstrip(), f"\n[exit {r.returncode}, {time.perf_counter() - t:.1f} s]\n", flush=True)
    if r.returncode:
        raise SystemExit(r.returncode)
    return text


def card(d: Path, tech: str) -> Path:
    session, path = d / f"{tech}_char.h5", d / f"{tech}_card.json"
    if not path.exists():
        devmodel("characterize", "--chip", f"sim:{tech}?devices=20000", "--seed", 11, "--devices", 500,
                 "--out", session, "--overwrite", "--quiet", "--durability", "off")
        devmodel("fit", session, "--out", path, "--overwrite", "--quiet")
    return path


def deploy_and_evaluate(d: Path, name: str, chip: str, schedule: str, card_path: Path, network="digits-cnn",
                        extra=(), compensation=("--drift-compensation", "--no-drift-compensation")) -> None:
    out = d / f"{name}.h5"
    devmodel("deploy", "--chip", chip, "--seed", 1, "--network", network, "--schedule", schedule,
             "--out", out, "--overwrite", "--quiet", *extra)
    for flag in compensation:
        devmodel("evaluate", "--deployment", out, "--card", card_path, "--trials", 25, "--quiet", flag)


def main() -> None:
    d = Path(sys.argv[1])
    only = set(sys.argv[3:]) if len(sys.argv) > 2 and sys.argv[2] == "--only" else None
    d.mkdir(parents=True, exist_ok=True)
    pcm, reram = card(d, "pcm"), card(d, "reram")
    steps = {
        "pcm": lambda: deploy_and_evaluate(d, "cnn_pcm", f"sim:pcm?devices={CHIP_N}", PCM_SCHEDULE, pcm),
        "reram": lambda: deploy_and_evaluate(d, "cnn_reram", f"sim:reram?devices={CHIP_N}", RERAM_SCHEDULE,
                                             reram),
        "wrong-spread": lambda: deploy_and_evaluate(
            d, "cnn_pcm_c2c", f"sim:pcm?devices={CHIP_N}&c2c_spread=0.10", PCM_SCHEDULE, pcm,
            compensation=("--drift-compensation",)),
        "wrong-tolerance": lambda: deploy_and_evaluate(
            d, "cnn_pcm_tol", f"sim:pcm?devices={CHIP_N}", PCM_SCHEDULE, pcm,
            extra=("--verify", "tolerance_us=1.0"), compensation=("--drift-compensation",)),
        "wrong-published": lambda: wrong_published(d, pcm),
        "hwa": lambda: hwa(d, pcm),
    }
    for name, step in steps.items():
        if only is None or name in only:
            print(f"===== {name} =====", flush=True)
            step()


def wrong_published(d: Path, pcm: Path) -> None:
    """The published PCM card (seed 001's σ_prog, ~half of what this chip's verify-then-drift-to-t0
    leaves) against the fitted one, on digits-cnn and on the more sensitive digits-cnn-small."""
    for flag in ("--drift-compensation", "--no-drift-compensation"):
        devmodel("evaluate", "--deployment", d / "cnn_pcm.h5", "--card", "published:pcm", "--trials", 25,
                 "--quiet", flag)
    out = d / "cnn_small_pcm.h5"
    devmodel("deploy", "--chip", f"sim:pcm?devices={CHIP_N}", "--seed", 1, "--network", "digits-cnn-small",
             "--schedule", PCM_SCHEDULE, "--out", out, "--overwrite", "--quiet")
    for c in (pcm, "published:pcm"):
        devmodel("evaluate", "--deployment", out, "--card", c, "--trials", 25, "--quiet")


def hwa(d: Path, pcm: Path) -> None:
    """noise-001 trained from the same FP network (seed 1, 30 FP epochs) deploys without extra steps
    and is compared with the FP network's deployment on the same chip (cnn_pcm.h5)."""
    net = d / "hwa_noise001.pt"
    devmodel("train-hwa", "--card", pcm, "--network", "digits-cnn", "--method", "noise-001", "--seed", 1,
             "--fp-epochs", 30, "--epochs", 30, "--trials", 5, "--quiet", "--out", net)
    deploy_and_evaluate(d, "hwa_pcm", f"sim:pcm?devices={CHIP_N}", PCM_SCHEDULE, pcm, network=str(net))


if __name__ == "__main__":
    main()
