"""Processes and threads: the stream ``worker``, the ``supervisor`` behind ``sharpeye run`` and the
embedded ``redis_server``. May import every pipeline package, never ``dashboard``.
"""
