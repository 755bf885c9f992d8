"""``python -m tanu.ops.cli``: the ``tanu`` command."""

import sys

from tanu.ops.cli import console

sys.exit(console())
