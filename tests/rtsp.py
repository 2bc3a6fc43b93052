"""The RTSP camera simulator for tests: see pipeline/simulator.py (also used by `sharpeye bench`)."""

from pipeline.simulator import RtspSimulator, camsim_unavailable, free_port

__all__ = ["RtspSimulator", "camsim_unavailable", "free_port"]
