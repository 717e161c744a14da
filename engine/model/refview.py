"""Reference-view selection (DA3 §2.13): which view becomes the world frame of the job.

Scores come from the class tokens entering block ``alt_start - 1``. One scene per call: the
tokens of batch element 0 decide.
"""

from __future__ import annotations

import torch

STRATEGIES = ("first", "middle", "saddle_balanced", "saddle_sim_range")
MIN_VIEWS_FOR_SELECTION = 3  # below this the first view is the reference


def _minmax(m: torch.Tensor) -> torch.Tensor:
    return (m - m.min()) / (m.max() - m.min() + 1e-8)


def reference_scores(tokens: torch.Tensor, strategy: str) -> torch.Tensor:
    """tokens: (S, C) class tokens. Returns (S,) scores, the best view has the **lowest** score."""
    s = tokens.shape[0]
    unit = tokens / tokens.norm(dim=-1, keepdim=True)
    sim = unit @ unit.T - torch.eye(s, device=tokens.device)  # the "diagonal" stays (≈ 0), as upstream
    if strategy == "saddle_balanced":
        mean_sim = sim.sum(dim=-1) / (s - 1)
        return (
            (_minmax(mean_sim) - 0.5).abs()
            + (_minmax(tokens.norm(dim=-1)) - 0.5).abs()
            + (_minmax(unit.var(dim=-1)) - 0.5).abs()
        )
    if strategy == "saddle_sim_range":
        return -(sim.max(dim=-1).values - sim.min(dim=-1).values)
    raise ValueError(f"unknown reference view strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def select_reference_view(stream: torch.Tensor, strategy: str) -> int:
    """stream: (B, S, T, C) residual stream. Returns the chosen view index (original order)."""
    s = stream.shape[1]
    if strategy == "first" or s <= 1:
        return 0
    if strategy == "middle":
        return s // 2
    return int(torch.argmin(reference_scores(stream[0, :, 0].float(), strategy)))
