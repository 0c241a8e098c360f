"""The site's DP budget for one run: its policy (the site's rules) and its ledger (the truth).

Everything here is decided by the site: the noise is calibrated at the site's δ with the
site's accountant; a run the policy does not allow (DP off where DP is required, more rounds
or local epochs than allowed, too little noise, a δ too large for the site's rows) is
refused; a round is trained only after its ε was reserved against the cap in one ledger
transaction (:meth:`SiteBudget.reserve`). ε for the run (what the coordinator's target
bounds) and ε for the site (every run it ever joined) are both composed from the ledger.

A run whose ledger entries went past its plan (a resumed run re-doing the round it was
interrupted in: those steps were taken and stay spent) calibrates the rest of its rounds
to what is left of the target (:func:`noise_for_rest`), or refuses if nothing useful is.

Every message that spends or plans ε is checked against the plan the site recorded at the
run's first training message (:mod:`client.run_plan`), so the target is the original one.
Fine-tuning is recorded under round :data:`FINE_TUNING_ROUND` (0), which no training round
has, so it counts neither as a trained round nor differently when ``rounds`` changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context

from client.ledger import LedgerEntry, SiteLedger, new_entry, open_site_ledger
from client.run_plan import plan_refusal, record_plan, recorded_plan, run_plan
from client.site_policy import SitePolicy, is_deployed
from federation.core.errors import PrivacyBudgetError
from federation.core.privacy import (
    MAX_NOISE_MULTIPLIER,
    History,
    RunNoise,
    epsilon_spent,
    fine_tuning_steps,
    noise_for_rest,
    planned_steps,
    sample_rate,
    site_noise_for_run,
)
from federation.core.run_layout import flwr_run_dir
from federation.core.settings import RunSettings

log = logging.getLogger(__name__)
__all__ = ["MAX_NOISE_MULTIPLIER", "SiteBudget", "noise_for_rest", "run_identity", "run_folder"]
# Relative slack on the run target: the accountant's own rounding, nothing a coordinator can use.
TARGET_TOLERANCE = 1e-6
# The ledger round of a run's fine-tuning steps: training rounds are 1..rounds, never 0.
FINE_TUNING_ROUND = 0


def release_kind(entry: LedgerEntry) -> str:
    """A release row's kind (the first word of what it released); "" for DP-SGD steps."""
    return entry.release.split(" ", 1)[0] if entry.release else ""


def _spend_name(server_round: int) -> str:
    return "the fine-tuning steps" if server_round == FINE_TUNING_ROUND else f"round {server_round}"


def run_identity(settings: RunSettings, context: Context) -> str:
    """Stable name of the run: its folder (kept by a resumed run), else Flower's run id."""
    return settings.output_dir or f"flwr-run-{context.run_id}"


def run_folder(settings: RunSettings, context: Context) -> Path:
    """Where the coordinator's run folder is (simulation default for the ledgers)."""
    return Path(settings.output_dir or flwr_run_dir(context.run_id))


@dataclass(frozen=True)
class SiteBudget:
    """A site's ledger and policy, as seen from one run."""

    site: str
    run: str
    ledger: SiteLedger
    policy: SitePolicy
    n_train: int

    @classmethod
    def open(
        cls, context: Context, settings: RunSettings, policy: SitePolicy, site: str, n_train: int
    ) -> "SiteBudget":
        ledger = open_site_ledger(policy, site, create_key=not is_deployed(dict(context.node_config)))
        return cls(
            site=site, run=run_identity(settings, context), n_train=n_train, ledger=ledger, policy=policy
        )

    @property
    def delta(self) -> float:
        """The site's δ: its policy's, else derived from its training rows (SitePolicy.delta_for)."""
        return self.policy.delta_for(self.n_train)

    def _epsilon(self, history: History) -> float:
        return epsilon_spent(history, delta=self.delta, accountant=self.policy.accountant)

    def trained(self, server_round: int) -> bool:
        """Whether this site trained round ``server_round`` of this run (fine-tuning is not a round)."""
        return server_round != FINE_TUNING_ROUND and any(
            e.server_round == server_round and not e.is_release for e in self.ledger.entries(self.run)
        )

    def run_steps(self) -> int:
        """DP-SGD steps this run has taken here (its training rows; releases are not steps)."""
        return sum(n for _, _, n in self.ledger.training_history(self.run))

    def run_epsilon(self) -> float:
        """ε of this run so far (its ledger rows: training and releases), at the site's δ."""
        return self._epsilon(self.ledger.history(self.run))

    def charged_rounds(self) -> list[int]:
        """The round of each training this run was charged for, in ledger order: one entry per
        training (:meth:`planned_round` is one step group), so a round re-done by a resume or
        trained for a reply that was lost appears as often as it was paid for. Sent with each
        training reply so the coordinator can say which charges no aggregate ever used."""
        return [
            e.server_round
            for e in self.ledger.entries(self.run)
            if not e.is_release and e.server_round != FINE_TUNING_ROUND
        ]

    def plan_refusal(self, settings: RunSettings) -> str | None:
        """Why this message's plan differs from the run's recorded one (None: it does not)."""
        refused = plan_refusal(recorded_plan(self.policy, self.run), settings)
        return f"site {self.site} refuses: {refused}" if refused else None

    def _checked_plan(self, settings: RunSettings) -> None:
        refused = self.plan_refusal(settings)
        if refused:
            raise PrivacyBudgetError(refused)

    def site_epsilon(self, extra: History = ()) -> float:
        """ε of every run of this node (plus ``extra`` steps), at the site's δ."""
        return self._epsilon(self.ledger.history() + list(extra))

    def noise(self, settings: RunSettings, server_round: int | None = None) -> float | None:
        """σ for the whole run: the coordinator's ε target, the site's δ and accountant.

        With ``server_round``: if this run's ledger entries plus the planned rounds still to
        come (``server_round`` to ``rounds``) would compose past the target (a resumed run
        re-doing its interrupted round, or rounds sent twice), those rounds get the σ that
        keeps the run within it given what was spent; PrivacyBudgetError if no σ up to
        ``MAX_NOISE_MULTIPLIER`` does. Decided by composing ε, not by counting rounds, so a
        coordinator's round numbers cannot make the site skip the recalibration.
        """
        self._checked_plan(settings)
        if not settings.privacy.enabled:
            return None
        planned = self.run_noise(settings).sigma
        if server_round is None:
            return planned
        refused = self.round_refusal(settings, server_round)
        if refused:
            raise PrivacyBudgetError(refused)
        spent = self.ledger.history(self.run)
        per_round = self.planned_round(settings, planned)[0]
        rounds_left = max(settings.rounds - server_round + 1, 1)
        rest = [(per_round[0], per_round[1], per_round[2] * rounds_left + fine_tuning_steps(settings))]
        rest += self.releases_to_come(settings)
        on_plan = not spent or self._within_target(settings, spent + rest)
        return planned if on_plan else self._recalibrated(settings, spent, per_round, server_round)

    def run_noise(self, settings: RunSettings) -> RunNoise:
        """DP-SGD's σ and the releases' z of this run at this site (site's δ, accountant, share);
        a plan whose releases and training the target cannot pay is refused (PrivacyBudgetError),
        at the run's first training message, before anything is spent."""
        try:
            return site_noise_for_run(
                settings,
                self.n_train,
                delta=self.delta,
                accountant=self.policy.accountant,
                release_share=self.policy.release_epsilon_share,
            )
        except ValueError as err:
            raise PrivacyBudgetError(f"site {self.site} refuses this run's plan: {err}") from None

    def releases_to_come(self, settings: RunSettings) -> History:
        """The run's planned releases not yet in the ledger, each kind at its z (none DP off)."""
        if not settings.privacy.enabled:
            return []
        noise, entries = self.run_noise(settings), self.ledger.entries(self.run)
        left = {k: n - sum(release_kind(e) == k for e in entries) for k, n in noise.releases.items()}
        return [(noise.release_z[k], 1.0, n) for k, n in left.items() if n > 0]

    def _within_target(self, settings: RunSettings, history: History) -> bool:
        target = settings.privacy.target_epsilon
        return self._epsilon(history) <= target * (1 + TARGET_TOLERANCE)

    def _recalibrated(
        self, settings: RunSettings, spent: History, per_round: tuple[float, float, int], server_round: int
    ) -> float:
        rounds_left = max(settings.rounds - server_round + 1, 1)
        target = settings.privacy.target_epsilon
        sigma = self._noise_for_rest(
            settings,
            spent + self.releases_to_come(settings),
            per_round[1],
            per_round[2] * rounds_left + fine_tuning_steps(settings),
        )
        if sigma is None:
            raise PrivacyBudgetError(
                f"site {self.site} has no useful budget left for this run: it spent ε "
                f"{self._epsilon(spent):.4g} of the target {target:g} (δ={self.delta:g}); "
                f"{rounds_left} more round(s) would need a noise multiplier above "
                f"{MAX_NOISE_MULTIPLIER:g}; keep the run as it is, or start a new one"
            )
        log.info(
            "site %s: round %s on, σ %.4g keeps the run within ε %g (spent %.4g)",
            self.site,
            server_round,
            sigma,
            target,
            self._epsilon(spent),
        )
        return sigma

    def rate(self, settings: RunSettings) -> float:
        return sample_rate(n_train=self.n_train, batch_size=settings.train.batch_size)

    def planned_round(self, settings: RunSettings, noise: float | None) -> History:
        """The accountant steps one round will take (σ = 0: DP off, no finite ε)."""
        t = settings.train
        steps = planned_steps(
            n_train=self.n_train,
            batch_size=t.batch_size,
            local_epochs=t.local_epochs,
            rounds=1,
            local_steps=t.local_steps,
        )
        return [(noise or 0.0, self.rate(settings), steps)]

    def run_refusal(self, settings: RunSettings, noise: float | None) -> str | None:
        """Why this site's policy does not allow the run at all (None: it does)."""
        p, t, site = self.policy, settings.train, f"site {self.site}"
        if not settings.privacy.enabled:
            return f"{site} requires DP (require-dp): privacy=off is refused" if p.require_dp else None
        checks = [
            (
                settings.rounds <= p.max_rounds,
                f"{site} allows at most {p.max_rounds} rounds (max-rounds); the run asks {settings.rounds}",
            ),
            (
                t.local_epochs <= p.max_local_epochs,
                f"{site} allows at most {p.max_local_epochs} local epochs (max-local-epochs); the run "
                f"asks {t.local_epochs}",
            ),
            (
                self.delta <= 1 / (10 * self.n_train),
                f"{site}'s δ={self.delta:g} is more than 1/(10·n_train) = {1 / (10 * self.n_train):.3g} for "
                "its training rows; the site must lower its 'delta' (or set none: 'auto')",
            ),
            (
                noise is not None and noise >= p.min_noise_multiplier,
                f"{site} requires a noise multiplier >= {p.min_noise_multiplier:g} "
                f"(min-noise-multiplier); this run's would be {noise or 0:.3g}",
            ),
        ]
        return next((message for ok, message in checks if not ok), None)

    def cap_refusal(
        self, entries: list[LedgerEntry], planned: History, server_round: int, what: str | None = None
    ) -> str | None:
        """Why the planned round would take the site past its cap (None: within it)."""
        if not any(sigma > 0 for sigma, _, _ in planned):
            return None  # DP off, allowed by the policy: no ε bound holds, none is claimed
        history = [e.accountant_step for e in entries]
        spent, would = self._epsilon(history), self._epsilon(history + list(planned))
        if would <= self.policy.max_epsilon:
            return None
        return (
            f"site {self.site} refuses {what or _spend_name(server_round)}: ε would reach {would:.4g} > cap "
            f"{self.policy.max_epsilon:.4g} (spent {spent:.4g}, δ={self.delta:g})"
        )

    def round_refusal(self, settings: RunSettings, server_round: int) -> str | None:
        """A round number outside the run's own ``1..rounds`` (the coordinator's counter is not
        trusted: rounds past the plan would train at the plan's σ, past the run's target)."""
        if 1 <= server_round <= settings.rounds:
            return None
        return f"site {self.site} refuses round {server_round}: this run has rounds 1 to {settings.rounds}"

    def target_refusal(
        self,
        settings: RunSettings,
        entries: list[LedgerEntry],
        planned: History,
        server_round: int,
        what: str | None = None,
    ) -> str | None:
        """Why the planned round would take this run past its ε target (None: within it).

        Checked in the same ledger transaction as the cap, so two train messages for one
        round arriving together cannot both pass on the same reading of the ledger.
        """
        if not any(sigma > 0 for sigma, _, _ in planned):
            return None
        run_history = [e.accountant_step for e in entries if e.run == self.run]
        if self._within_target(settings, run_history + list(planned)):
            return None
        return (
            f"site {self.site} refuses {what or _spend_name(server_round)}: this run's ε would reach "
            f"{self._epsilon(run_history + list(planned)):.4g} > its target "
            f"{settings.privacy.target_epsilon:g} (δ={self.delta:g})"
        )

    def refusal(self, settings: RunSettings, noise: float | None, server_round: int) -> str | None:
        """Read-only check (the budget query before a secure-aggregation round)."""
        entries, planned = self.ledger.entries(), self.planned_round(settings, noise)
        return (
            self.round_refusal(settings, server_round)
            or self.run_refusal(settings, noise)
            or self.cap_refusal(entries, planned, server_round)
            or self.target_refusal(settings, entries, planned, server_round)
        )

    def reserve(
        self, settings: RunSettings, noise: float | None, server_round: int, planned: History | None = None
    ) -> list[LedgerEntry]:
        """Check the round, the policy, the cap and the run target and write the round's spend
        in one transaction. ``planned``: the round's steps when they are not DP-SGD's (a
        model=glm round: one exact pass, ``[(0.0, 1.0, 1)]``).

        Raises :class:`~federation.core.errors.PrivacyBudgetError` with the reason if refused.
        """
        refusal = self.round_refusal(settings, server_round) or self.run_refusal(settings, noise)
        if refusal:
            raise PrivacyBudgetError(refusal)
        planned = self.planned_round(settings, noise) if planned is None else planned

        def plan(entries: list[LedgerEntry]) -> list[LedgerEntry] | str:
            refused = (
                self.plan_refusal(settings)
                or self.cap_refusal(entries, planned, server_round)
                or self.target_refusal(settings, entries, planned, server_round)
            )
            if refused:
                return refused
            # Under the ledger's write lock: two first messages cannot record two plans.
            record_plan(self.policy, self.run, run_plan(settings))
            return self._new_entries(entries, planned, server_round)

        return self.ledger.reserve(plan)

    def _noise_for_rest(self, settings: RunSettings, spent: History, rate: float, steps: int) -> float | None:
        """σ for ``steps`` more steps at ``rate`` after ``spent``, within the run's target at the
        site's δ and accountant (None: none useful is)."""
        return noise_for_rest(
            spent,
            rate=rate,
            steps=steps,
            target_epsilon=settings.privacy.target_epsilon,
            delta=self.delta,
            accountant=self.policy.accountant,
        )

    def _new_entries(
        self, entries: list[LedgerEntry], planned: History, server_round: int, release: str = ""
    ) -> list[LedgerEntry]:
        history = [e.accountant_step for e in entries]
        run_history = [e.accountant_step for e in entries if e.run == self.run]
        return [
            new_entry(
                site=self.site,
                run=self.run,
                server_round=server_round,
                step=step,
                delta=self.delta,
                epsilon_run=self._epsilon(run_history + planned[: i + 1]),
                epsilon_total=self._epsilon(history + planned[: i + 1]),
                release=release,
            )
            for i, step in enumerate(planned)
        ]

    # Fine-tuning after the federation (personalize=finetune, client.personalize): its steps
    # are in the run's plan (federation.core.privacy.fine_tuning_steps), recorded in the
    # ledger under FINE_TUNING_ROUND, once per run identity whatever ``rounds`` a message says.

    def fine_tuning_noise(self, settings: RunSettings) -> float | None:
        """σ of the fine-tuning steps: the run's σ while its spent steps plus these stay within
        the target (they always do on plan), else the σ that keeps them within it."""
        self._checked_plan(settings)
        refused = self.fine_tuning_refusal(self.ledger.entries(), settings)  # checked again on reserve
        if refused:
            raise PrivacyBudgetError(refused)
        if not settings.privacy.enabled:
            return None
        planned = self.noise(settings)
        spent, rate, steps = self.ledger.history(self.run), self.rate(settings), fine_tuning_steps(settings)
        spent = spent + self.releases_to_come(settings)  # the personalized model's metrics
        if self._within_target(settings, spent + [(planned, rate, steps)]):
            return planned
        sigma = self._noise_for_rest(settings, spent, rate, steps)
        if sigma is None:
            raise PrivacyBudgetError(
                f"site {self.site} has no budget left in this run's ε target "
                f"{settings.privacy.target_epsilon:g} for {steps} fine-tuning steps; "
                "use personalize=recalibrate"
            )
        return sigma

    def fine_tuning_refusal(self, entries: list[LedgerEntry], settings: RunSettings) -> str | None:
        """A site fine-tunes once per run identity (any ``rounds``), and only a run it trained in."""
        mine = [e for e in entries if e.run == self.run and not e.is_release]
        if not any(e.server_round != FINE_TUNING_ROUND for e in mine):
            return f"site {self.site} did not train in this run: nothing to personalize"
        if any(e.server_round == FINE_TUNING_ROUND for e in mine):
            return f"site {self.site} already fine-tuned this run's model (once per run)"
        return None

    def reserve_fine_tuning(self, settings: RunSettings, noise: float | None) -> list[LedgerEntry]:
        """Check and write the fine-tuning steps' spend in one transaction, before any step."""
        refusal = self.run_refusal(settings, noise)
        if refusal:
            raise PrivacyBudgetError(refusal)
        server_round = FINE_TUNING_ROUND
        planned = [(noise or 0.0, self.rate(settings), fine_tuning_steps(settings))]

        def plan(entries: list[LedgerEntry]) -> list[LedgerEntry] | str:
            refused = (
                self.plan_refusal(settings)
                or self.fine_tuning_refusal(entries, settings)
                or self.cap_refusal(entries, planned, server_round)
                or self.target_refusal(settings, entries, planned, server_round)
            )
            return refused or self._new_entries(entries, planned, server_round)

        return self.ledger.reserve(plan)

    # Releases (issue P, client.dp_release): every row-dependent statistic a reply carries is a
    # Gaussian mechanism charged here, in the same transaction discipline as a training round.

    def reserve_release(
        self,
        settings: RunSettings,
        *,
        z: float,
        server_round: int,
        release: str,
        in_run_plan: bool,
        limit: int | None = None,
    ) -> LedgerEntry:
        """Check and write one release (noise multiplier ``z``, one step at rate 1) before it
        is sent: the site's policy and cap, and, for a release of a training run's plan, the
        run's ε target and how many releases of its kind (``release``'s first word) the plan
        holds (``limit``), so the releases and the rounds together never pass the target."""
        refusal = self.run_refusal(settings, z) if z > 0 else self.exact_refusal(settings)
        if refusal:
            raise PrivacyBudgetError(refusal)
        if in_run_plan:  # z and the limits come from this message's plan: it must be the run's
            self._checked_plan(settings)
        planned, kind = [(z, 1.0, 1)], release.split(" ", 1)[0]

        def plan(entries: list[LedgerEntry]) -> list[LedgerEntry] | str:
            done = sum(e.run == self.run and release_kind(e) == kind for e in entries)
            refused = (
                (
                    f"site {self.site} refuses a {kind} release: this run's plan holds {limit}"
                    if limit is not None and done >= limit
                    else None
                )
                or self.cap_refusal(entries, planned, server_round, f"a {kind} release")
                or (
                    self.target_refusal(settings, entries, planned, server_round, f"a {kind} release")
                    if in_run_plan
                    else None
                )
            )
            return refused or self._new_entries(entries, planned, server_round, release=release)

        return self.ledger.reserve(plan)[0]

    def exact_refusal(self, settings: RunSettings) -> str | None:
        """An exact release (no noise) only where the site allows DP off and the run has it."""
        if self.policy.require_dp:
            return f"site {self.site} requires DP (require-dp): it releases no exact statistic"
        if settings.privacy.enabled:
            return f"site {self.site}: a DP run's releases carry noise"
        return None
