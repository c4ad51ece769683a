"""kspacing-bench harness: train, evaluate and rank k-point length models on the
JARVIS-Leaderboard ``dft_3d_kpoint_length_unit`` benchmark."""

from harness.context import ModelContext

__all__ = ["ModelContext"]
