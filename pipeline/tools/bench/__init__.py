"""``sharpeye bench``: ``content`` makes the clips, ``run`` runs and measures one configuration,
``procs`` holds the two measured child processes, ``floor`` the floor, ``command`` the CLI and report.
"""
