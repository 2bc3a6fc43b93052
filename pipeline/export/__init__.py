"""Post-incident export: segments stream-copied to one MP4 per camera, signed manifest, cases, holds (job.run_export).
May import pipeline.config, pipeline.record and pipeline.publish.bus at most (and PyAV, cryptography, rich); no web."""
