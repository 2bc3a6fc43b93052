"""cameras.<id>.neighbours: the related cameras a config names for the handling view, checked to exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config

CONFIG = """\
grid_cells:
  G1: {name: Xinhua Street, officer: {name: Wang Wei, phone: "13800000001"}}
  G2: {name: Station Square, officer: {name: Li Na, phone: "13800000002"}}
cameras:
  lobby:
    name: Lobby
    source: rtsp://h/lobby
    grid_cell: G1
    neighbours: [NEIGHBOURS]
  square: {name: Square, source: rtsp://h/square, grid_cell: G2}
"""


def write(tmp_path: Path, neighbours: str) -> Path:
    p = tmp_path / "streams.yaml"
    p.write_text(CONFIG.replace("NEIGHBOURS", neighbours))
    return p


def test_neighbours_of_another_cell_load(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "square"))
    assert cfg.cameras["lobby"].neighbours == ["square"]
    assert cfg.cameras["square"].neighbours == []


@pytest.mark.parametrize(("given", "said"), [("squre", "neighbour 'squre' is not defined under cameras"),
                                             ("lobby", "neighbour 'lobby' is the camera itself")])
def test_an_unknown_neighbour_is_named_with_its_camera_and_line(tmp_path: Path, given: str, said: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, f"square, {given}"))
    assert any(f":9: cameras.lobby.neighbours.1: camera 'lobby': {said}" in m for m in ei.value.problems), \
        ei.value.problems
