"""The ``sharpeye`` command: the top layer.  It may import pipeline, history and dashboard; nothing imports it.

Every sub-command parses its arguments here and calls one function of a lower layer.  Exit codes:
0 done, 1 a runtime failure (I/O, a model that cannot load, verification failed), 2 a usage or
config problem (printed as ``FILE:LINE: path: problem``).
"""
