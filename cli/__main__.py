"""``python -m cli``: the same as the ``sharpeye`` command."""

import sys

from cli.main import main

sys.exit(main())
