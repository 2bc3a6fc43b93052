"""Publishing: message and snapshot building (``events``), the one ``publisher`` every alert goes
through, the Redis bus (``bus``) and the typed camera status (``status``). Imports config and analyse.
"""
