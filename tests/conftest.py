"""Test-suite settings: one intra-op thread (the models here are tiny; threads only add overhead)."""

import torch

torch.set_num_threads(1)
