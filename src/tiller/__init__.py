"""tiller: train chat language models from human preferences (SFT, reward models, RLOO, DPO)."""

__version__ = "0.1.0"
