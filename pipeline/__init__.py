"""Sharp Eyes stream workers: the data path from camera to bus, one sub-package per stage.

ingest (read the camera) → analyse (motion, detect, track, rules, alerts) → publish (events, bus,
status), with record beside ingest, config under everything, runtime running it and tools around it.
"""
