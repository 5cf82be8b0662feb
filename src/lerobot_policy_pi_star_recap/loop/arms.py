"""The methods the benchmarks compare, one `Arm` each: its lerobot-train flags, what data it trains on
and which episodes of it, the guidance betas it is evaluated with, and whether it is an iterated arm or a
probe outside the default grid. Two registries, one per regime, since an arm's data differs between them:
`FINE_TUNING_ARMS` fine-tune the demo's stage 1 on its collected experience (benchmarks/efficacy.py),
`FROM_SCRATCH_ARMS` train from scratch on demonstrations of mixed quality (benchmarks/mixed_quality.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import flags as f

GUIDANCE = (1.0, 1.5, 2.5)
DATA = ("mixed", "labelled", "outcome", "demos", "tagged")
EPISODES = ("all", "successful", "top_third_return", "better_operator")


@dataclass(frozen=True)
class Arm:
    """One method. `data`: "mixed" (the demos and the collected experience), "labelled" (its cross-fitted
    `value-label` copy), "outcome" (that copy with outcome indicators), "demos" (the demos alone) or
    "tagged" (the labels as text in the prompt, for stock VLAs); `episodes`: which of them it trains on."""

    name: str
    flags: tuple[str, ...] = ()
    data: str = "mixed"
    episodes: str = "all"
    betas: tuple[float | None, ...] = (None,)  # one evaluation per guidance beta (None: no guidance)
    iterates: str | None = None  # an iterated arm: the arm whose iteration-1 policy collects round 2
    probe: bool = False  # a probe of one hypothesis, run only when named
    # an evaluation-only arm: evaluates the checkpoint this arm trains (same flags) instead of its own
    evaluates: str | None = None

    def __post_init__(self) -> None:
        if self.data not in DATA or self.episodes not in EPISODES:
            raise ValueError(f"arm {self.name}: data {self.data!r} / episodes {self.episodes!r} unknown")

    def variant(self, name: str, *flags: str, **changes) -> Arm:
        """A probe of this arm with `flags` added: same data and episodes, no guidance unless given."""
        changes = {"betas": (None,), "probe": True, **changes}
        return replace(self, name=name, flags=(*self.flags, *flags), **changes)

    def cells(self, seed: int) -> list[tuple[float | None, str]]:
        """(beta, cell name) of every evaluation of fine-tuning seed `seed`."""
        return [(beta, f"{self.label(beta)}_seed{seed}") for beta in self.betas]

    def label(self, beta: float | None) -> str:
        """The arm as its cells name it: guided evaluations carry their beta."""
        return self.name if beta is None else f"{self.name}_beta{beta}"


def registry(*arms: Arm) -> dict[str, Arm]:
    return {arm.name: arm for arm in arms}


def default_arms(arms: dict[str, Arm]) -> list[str]:
    """The default grid: every arm but the probes, in registry order."""
    return [name for name, arm in arms.items() if not arm.probe]


_BC = (*f.NO_ADVANTAGE, f.policy(f.INTERVENTION_WEIGHT, 1))
_BC_ARM = Arm("bc", _BC)
_FILTERED = Arm("filtered_bc", (*_BC, f.policy(f.SUCCESS_ONLY, True)))
_DAGGER = Arm("dagger", (*_BC, f.policy(f.AUTO_WEIGHT, 0)))  # autonomous frames get no loss
_RECAP_PAPER = Arm("recap_paper", f.LABELLED_RECAP_FLAGS, data="labelled", betas=GUIDANCE)
# Probes of one hypothesis each. States far outside stage 1's normalisation hurt fine-tuning: normalised
# states clamped to +-5 stds.
_STATE_CLIP = f.policy(f.STATE_CLIP, 5)
# Stage 2's budget is diluted (the demos are 10% of the mixed frames): demo frames weighted 9x, so demos
# and collected experience carry equal shares of the loss.
_DEMO_WEIGHT = f.policy(f.DEMO_WEIGHT, 9)
# The expert's corrections teach the wrong thing (DAgger is the worst arm): expert-controlled frames out
# of the policy loss (the policy's own frames stay).
_NO_EXPERT = f.policy(f.INTERVENTION_WEIGHT, 0)
# The I=1 policy copies the failures it is only shown as negatives: negatives out of the loss.
_NEGATIVE_WEIGHT0 = f.policy(f.NEGATIVE_WEIGHT, 0)
# Is it the labels or the conditioning? RECAP conditioned on the episode's outcome (every frame of a
# successful episode and every expert frame positive): filtered BC's information through RECAP.
_OUTCOME = _RECAP_PAPER.variant("recap_outcome", data="outcome")
_NEGATIVE0 = _RECAP_PAPER.variant("recap_paper_negative_weight0", _NEGATIVE_WEIGHT0)

FINE_TUNING_ARMS = registry(
    Arm("null_control", f.NO_ADVANTAGE, data="demos"),  # stage 1 + the same steps on its own demos
    _BC_ARM,
    _FILTERED,
    # the third of the episodes with the highest return (D4RL's "10% BC")
    Arm("return_filtered_bc", _BC, episodes="top_third_return"),
    _DAGGER,
    Arm("awr", f.AWR_FLAGS),
    Arm("recap_iql", f.RECAP_FLAGS),
    _RECAP_PAPER,
    _DAGGER.variant("dagger_state_clip", _STATE_CLIP),
    _RECAP_PAPER.variant("recap_paper_state_clip", _STATE_CLIP),
    _BC_ARM.variant("bc_demo_weight", _DEMO_WEIGHT),
    _FILTERED.variant("filtered_bc_demo_weight", _DEMO_WEIGHT),
    _RECAP_PAPER.variant("recap_paper_demo_weight", _DEMO_WEIGHT, betas=(1.0, 1.5)),
    _FILTERED.variant("filtered_bc_no_expert", _NO_EXPERT),
    _RECAP_PAPER.variant("recap_paper_no_expert", _NO_EXPERT),
    _OUTCOME,
    _NEGATIVE0,
    _OUTCOME.variant("recap_outcome_negative_weight0", _NEGATIVE_WEIGHT0),
    # Guidance needs a reference: negatives out of the I=1 branch only, the unconditional branch still
    # behaviour-clones all data, so cfg_beta > 1 pushes the I=1 policy away from BC.
    _NEGATIVE0.variant(
        "recap_paper_negative_weight0_guided",
        f.policy(f.UNCONDITIONAL_NEGATIVE_WEIGHT, 1),
        betas=GUIDANCE,
    ),
    # Does the gain compound, as the paper's iterations assume? The arm's own iteration-1 policy collects
    # a second round, which joins the first round's experience, and the arm trains again from stage 1.
    _RECAP_PAPER.variant("recap_paper_iter2", iterates="recap_paper", betas=GUIDANCE),
    _FILTERED.variant("filtered_bc_iter2", iterates="filtered_bc"),
    _BC_ARM.variant("bc_iter2", iterates="bc"),
)
# A stock LeRobot VLA (--base-policy smolvla) takes no pi_star_recap option: its arms choose data only.
STOCK_ARMS = registry(
    Arm("null_control", data="demos"),
    Arm("bc"),
    Arm("filtered_bc", episodes="successful"),
    # the cross-fitted indicators as text in the prompt, evaluated through `tag-checkpoint`
    Arm("recap_prompt", data="tagged"),
)
FROM_SCRATCH_ARMS = registry(
    Arm("bc", f.NO_ADVANTAGE, data="demos"),  # every demonstration (= filtered BC: all succeed)
    Arm("return_filtered_bc", f.NO_ADVANTAGE, data="demos", episodes="top_third_return"),
    # the 'better' operator's demonstrations only: knowledge a user does not have, an upper reference
    Arm("oracle_bc", f.NO_ADVANTAGE, data="demos", episodes="better_operator"),
    Arm("recap_paper", f.LABELLED_RECAP_FLAGS, data="labelled", betas=GUIDANCE),
    Arm("awr", f.AWR_FLAGS, data="demos"),
    Arm("recap_iql", f.RECAP_FLAGS, data="demos", betas=GUIDANCE),
    Arm(
        "recap_paper_negative_weight0",
        (*f.LABELLED_RECAP_FLAGS, _NEGATIVE_WEIGHT0),
        data="labelled",
        betas=GUIDANCE,
        probe=True,
    ),
    # A diagnostic: recap_paper's own checkpoint at cfg_beta 0, its unconditional branch alone. Level with bc,
    # the cost is in the condition; below bc, in training a conditioned model at all.
    Arm(
        "recap_paper_unconditional",
        f.LABELLED_RECAP_FLAGS,
        data="labelled",
        betas=(0.0,),
        probe=True,
        evaluates="recap_paper",
    ),
)


def episodes_flag(episodes: list[int]) -> str:
    """lerobot-train's flag that trains on `episodes` only."""
    return f"--dataset.episodes=[{','.join(map(str, episodes))}]"


def successful_episodes(root: Path) -> list[int]:
    """Episode indices of `root` whose success flag is set on some frame."""
    from ..data.columns import read_recap_columns

    columns = read_recap_columns(root)
    if columns.success is None:
        raise SystemExit(
            f"{root} has no success column ('next.success'): filtered BC cannot choose episodes."
        )
    episodes = sorted({int(e) for e in columns.episode_index[np.asarray(columns.success, dtype=bool)]})
    if not episodes:
        raise SystemExit(f"{root} has no successful episode: filtered BC has nothing to train on.")
    return episodes


def top_return_episodes(root: Path, share: float = 1 / 3) -> list[int]:
    """The episodes of `root` with the highest return (sum of rewards), `share` of them (at least one),
    ties to the lower episode index: what a user can select with the reward column alone (D4RL's "10% BC";
    with the paper's rewards, the fastest successes)."""
    from ..data.columns import read_recap_columns

    columns = read_recap_columns(root)
    episodes = np.unique(columns.episode_index)
    returns = {int(e): float(columns.reward[columns.episode_index == e].sum()) for e in episodes}
    ranked = sorted(returns, key=lambda e: (-returns[e], e))
    return sorted(ranked[: max(1, round(share * len(ranked)))])


def operator_episodes(root: Path, operator: str) -> list[int]:
    """The episodes of `root` that `operator` demonstrated (from the collection's records)."""
    from ..data.writing import episode_records

    records = episode_records(root)
    if records is None:
        raise SystemExit(
            f"{root} has no meta/recap_collect.json: which operator made which episode is unknown."
        )
    chosen = [i for i, r in enumerate(records) if r.get("operator") == operator]
    if not chosen:
        raise SystemExit(f"{root} has no episode of operator {operator!r}.")
    return chosen


def episode_selection(arm: Arm, data: Path, demos: Path | None = None) -> tuple[str, ...]:
    """The `--dataset.episodes` flag of an arm that trains on some episodes of `data` only (`demos`, for
    the oracle: the collection that records who demonstrated which)."""
    if arm.episodes == "all":
        return ()
    chosen = {
        "successful": lambda: successful_episodes(data),
        "top_third_return": lambda: top_return_episodes(data),
        "better_operator": lambda: operator_episodes(demos or data, "better"),
    }[arm.episodes]()
    return (episodes_flag(chosen),)
