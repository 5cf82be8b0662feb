"""benchmarks/conditioning_gap.py: frames grouped by label and data type, and the relative gap."""

from __future__ import annotations

import torch
from synthetic import load_benchmark


def test_frames_are_grouped_by_whichever_label_columns_exist():
    gap = load_benchmark("conditioning_gap")
    batch = {"index": torch.arange(3), "advantage_indicator": torch.tensor([1.0, 0.0, 1.0])}
    assert gap.frame_groups(batch) == ["I=1", "I=0", "I=1"]
    batch["data_type"] = ["demo", "auto", "intervention"]
    assert gap.frame_groups(batch) == ["I=1 demo", "I=0 auto", "I=1 intervention"]
    assert gap.frame_groups({"index": torch.arange(2)}) == ["all", "all"]


def test_relative_gap_is_the_distance_over_the_reference_norm_per_frame():
    gap = load_benchmark("conditioning_gap")
    a = torch.tensor([[[3.0, 4.0]], [[1.0, 0.0]]])
    b = torch.zeros_like(a)
    reference = torch.tensor([[[0.0, 10.0]], [[2.0, 0.0]]])
    assert torch.allclose(gap.relative_gap(a, b, reference), torch.tensor([0.5, 0.5]))
