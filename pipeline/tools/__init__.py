"""Engineers' tools around the pipeline: replay, preview, the RTSP simulator, generated docs and the
benchmark (``bench/``). They import the pipeline's stages; nothing in the pipeline imports them.
"""
