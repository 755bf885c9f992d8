"""`python -m tanu.searcher`: runs the searcher service, configured from the environment."""

import sys

from tanu.core.config import SearcherConfig
from tanu.core.runner import main
from tanu.searcher import SearcherService

if __name__ == "__main__":
    sys.exit(main("searcher", SearcherConfig, SearcherService))
