"""``python -m fmnist ...`` is the ``fmnist`` command."""

import sys

from fmnist.cli.main import main

sys.exit(main())
