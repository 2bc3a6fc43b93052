"""The config: ``schema`` (pure pydantic, every knob) and ``load`` (YAML with line numbers, reload).

Imports no other package of Sharp Eyes; every other package may import it.
"""

from pipeline.config.load import ConfigError, load_config, parse_config, reload_config
from pipeline.config.schema import (
    AlertsConfig,
    CameraConfig,
    Config,
    IdleConfig,
    LineConfig,
    ModelConfig,
    MotionConfig,
    ScheduleWindow,
    redact_url,
)

__all__ = ["AlertsConfig", "CameraConfig", "Config", "ConfigError", "IdleConfig", "LineConfig", "ModelConfig",
           "MotionConfig", "ScheduleWindow", "load_config", "parse_config", "redact_url", "reload_config"]
