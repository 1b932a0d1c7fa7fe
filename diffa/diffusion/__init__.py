"""Model-agnostic masked-diffusion math: forward noising, losses and ELBOs, reverse sampling.

``Denoiser`` is the model as this math sees it: any callable ``denoiser(x (R, L) long,
attention_mask (R, L) bool or None, rows (R,) long) -> logits (R, L, V)``, where ``rows`` says
which example of the batch each row of ``x`` is.
"""

from typing import Callable, Optional

import torch

Denoiser = Callable[[torch.Tensor, Optional[torch.Tensor], torch.Tensor], torch.Tensor]
