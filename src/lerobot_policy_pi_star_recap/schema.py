"""The RECAP columns of a LeRobot dataset: one place that names them, for the readers and the writers.

Each field has the canonical column this package writes, then the other columns it accepts (LeRobot's
own names, HIL-SERL's), in the order a reader prefers them. The canonical one comes first, so that a
dataset that was annotated over a source with an older column of another name is read the way it was
written. Readers (`data.columns`), `annotate` and the dataset writers all take their names from here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

DATA_TYPES = ("demo", "auto", "intervention")
DEMO, AUTO, INTERVENTION = range(3)


@dataclass(frozen=True)
class Field:
    """One RECAP field: the column written, the columns read (in priority order) and its feature spec."""

    name: str
    aliases: tuple[str, ...] = ()
    dtype: str = "float32"
    shape: tuple[int, ...] = (1,)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every accepted column, most preferred first."""
        return (self.name, *self.aliases)

    def find(self, present: Collection[str]) -> str | None:
        """The most preferred accepted column among `present`, or None."""
        return next((column for column in self.columns if column in present), None)

    @property
    def feature(self) -> dict:
        """The LeRobot feature spec a writer declares for this column."""
        return {"dtype": self.dtype, "shape": self.shape, "names": None}


DATA_TYPE = Field("data_type", dtype="string")  # "demo" | "auto" | "intervention", per episode
REWARD = Field("reward", ("next.reward",))
DONE = Field("done", ("next.done",), dtype="bool")  # True only on the last frame of each episode
INTERVENTION_MASK = Field(
    "intervention_mask", ("intervention", "complementary_info.is_intervention"), dtype="bool"
)
SUCCESS = Field("next.success", ("success",), dtype="bool")  # LeRobot semantics: True on the last frame
TRUNCATED = Field("truncated", ("next.truncated",), dtype="bool")  # read only: a time-out, not a failure
# The task before `pi-star-recap tag-prompts` wrote the advantage into the prompt (then LeRobot's
# task_index points at the tagged prompt); per-task thresholds and evaluation read the original task.
TASK = Field("base_task_index", ("task_index",), dtype="int64")
# Written by `pi-star-recap value-label` (the paper's staged workflow).
VALUE = Field("value")
ADVANTAGE = Field("advantage")
INDICATOR = Field("advantage_indicator")

# Raw per-frame intervention flags of recordings: LeRobot's (`lerobot-rollout --strategy.type=dagger` and
# HIL recordings write `intervention`) and HIL-SERL's. annotate turns them into intervention_mask and drops
# them, and merge drops them from an input that has intervention_mask: the mask is an annotated dataset's
# only intervention flag, so datasets with and without takeovers have the same features and merge.
RAW_INTERVENTION_FLAGS = INTERVENTION_MASK.aliases


def superseded_flags(features: Collection[str]) -> list[str]:
    """The raw intervention flag columns among `features` that its intervention_mask supersedes (none when
    there is no intervention_mask: an unannotated dataset keeps its flags for annotate)."""
    if INTERVENTION_MASK.name not in features:
        return []
    return [column for column in RAW_INTERVENTION_FLAGS if column in features]


# What annotate, collect and merge write (and merge requires) on every frame.
RECAP_FEATURES: dict[str, dict] = {
    field.name: field.feature for field in (DATA_TYPE, REWARD, DONE, INTERVENTION_MASK, SUCCESS)
}
