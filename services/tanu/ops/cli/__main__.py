"""``python -m tanu.ops.cli``: the ``tanu`` command."""

import sys

from tanu.ops.cli import main

sys.exit(main())
