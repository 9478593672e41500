"""The losses of the four loops, as pure functions of model outputs (checked against TRL in
tests/test_trl_reference.py).

- language modelling (pretraining and SFT): mean cross-entropy over the positions whose target is
  not `IGNORE_INDEX` (SFT masks everything but the assistant's tokens);
- reward model: Bradley–Terry, `-logsigmoid(r_chosen - r_rejected)` averaged over pairs;
- DPO (Rafailov et al. 2023, the sigmoid loss): `-logsigmoid(β·((π_c − π_r) − (ref_c − ref_r)))`
  with π the summed log-probabilities of a response's tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.transformer import IGNORE_INDEX


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position negative log-likelihood (B, T) in fp32; 0 where the target is ignored."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none").view_as(
        targets
    )


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)


def sequence_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each row's target tokens (B,), ignored positions left out."""
    return -token_nll(logits, targets).sum(dim=-1)


def last_values(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A value head's output at each right-padded sequence's last real token: its reward."""
    return values.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(chosen.float() - rejected.float()).mean()


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The DPO loss and each pair's implicit reward margin β·((π_c − ref_c) − (π_r − ref_r))."""
    margin = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return -F.logsigmoid(margin).mean(), margin.detach()
