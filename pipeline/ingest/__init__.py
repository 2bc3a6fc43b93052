"""Ingest: one reconnecting reader per camera input (``reader``), in two roles: decode and sample
(``source``) and stream-copy packets to the recorder (``record_input``). Imports config and record only.
"""
