"""The demo's streams.yaml gives the command room what it draws: every grid cell an outline, every camera
a position inside its own cell, and procedures (SOP) on the rules an operator handles first."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _inside(p: tuple[float, float], poly: list[tuple[float, float]]) -> bool:
    """Ray casting: whether point p lies inside the polygon."""
    x, y = p
    inside = False
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1]):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def test_demo_config_draws_its_grid_map_and_carries_procedures() -> None:
    cfg = load_config(ROOT / "streams.yaml")
    assert cfg.grid_cells and all(c.outline for c in cfg.grid_cells.values())
    for cid, cam in cfg.cameras.items():
        assert cam.position is not None, cid
        outline = cfg.grid_cells[cam.grid_cell].outline
        assert outline is not None
        x, y = cam.position
        assert _inside((x, y), [(px, py) for px, py in outline]), f"{cid} is drawn outside {cam.grid_cell}"
    procedures = {rid: r.procedure for cam in cfg.cameras.values() for rid, r in cam.effective_rules().items()}
    assert procedures["intruder"] and "派警" in procedures["intruder"]
    assert sum(1 for p in procedures.values() if p) >= 3
