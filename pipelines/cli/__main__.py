"""``python -m pipelines.cli``: the ``survey`` command (how ``survey submit`` starts a run on a
cluster, where the console script may not be on the path)."""

import sys

from pipelines.cli.app import main

sys.exit(main())
