"""RDP or PRV: the noise each accountant needs for the same (ε, δ) target (issue Q, item 3).

    .venv/bin/python -m benchmarks.accountant_noise > benchmarks/results/accountant_noise.md

For the default run (10 rounds, one local epoch, batch 32, ε = 3, δ derived from the site's
training rows, the releases' share 0.5: validation each round, the test split once) at sites
of several sizes: DP-SGD's σ and the releases' z that each Opacus accountant calibrates
(:func:`federation.core.privacy.site_noise_for_run`'s search), and the seconds that search
took. Less noise for the same guarantee is better models and sharper released numbers; the
time is paid by every site once per run size (cached), and again whenever ε is recomputed.
"""

from __future__ import annotations

import time
import warnings

from benchmarks.common import machine_info
from client.site_policy import derived_delta
from federation.core.privacy import TEST, VALIDATION, _run_noise, planned_steps, sample_rate

SIZES = (68, 169, 500, 5000, 50000)
ROUNDS, BATCH, TARGET, SHARE = 10, 32, 3.0, 0.5


def one(n_train: int, accountant: str) -> tuple[float, float, float, float]:
    """(σ, test z, validation z, seconds) for a site of ``n_train`` training rows."""
    start = time.process_time()
    noise = _run_noise(
        target=TARGET,
        share=SHARE,
        delta=derived_delta(n_train),
        accountant=accountant,
        rate=sample_rate(n_train=n_train, batch_size=BATCH),
        steps=planned_steps(n_train=n_train, batch_size=BATCH, local_epochs=1, rounds=ROUNDS),
        releases=((TEST, 1), (VALIDATION, ROUNDS)),
    )
    return noise.sigma, noise.release_z[TEST], noise.release_z[VALIDATION], time.process_time() - start


def main() -> None:
    warnings.simplefilter("ignore")  # Opacus: "optimal order is the largest alpha"
    info = machine_info()
    print("# Noise for the same ε: RDP vs PRV accountant\n")
    print("Command: `python -m benchmarks.accountant_noise`\n")
    print("Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + "\n")
    print(f"Default run: {ROUNDS} rounds, batch {BATCH}, ε = {TARGET:g}, release share {SHARE:g}.\n")
    print("| training rows | δ | σ RDP | σ PRV | PRV/RDP | test z RDP / PRV | search s RDP / PRV (CPU) |")
    print("|---:|---:|---:|---:|---:|---|---|")
    for n in SIZES:
        rdp, prv = one(n, "rdp"), one(n, "prv")
        print(
            f"| {n} | {derived_delta(n):g} | {rdp[0]:.3f} | {prv[0]:.3f} | {prv[0] / rdp[0]:.3f} "
            f"| {rdp[1]:.3f} / {prv[1]:.3f} | {rdp[3]:.1f} / {prv[3]:.1f} |"
        )


if __name__ == "__main__":
    main()
