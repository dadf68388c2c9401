import os

import pytest
import torch

# Tests never reach a hub or W&B's servers.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

FUSION_NAMES = ["none", "all_attention", "class_token", "pairwise", "cross_attention"]


@pytest.fixture(params=FUSION_NAMES)
def fusion_name(request) -> str:
    return request.param
