"""`python -m tanu.store`: runs the store service, configured from the environment."""

import sys

from tanu.core.config import StoreConfig
from tanu.core.runner import main
from tanu.store.service import StoreService

if __name__ == "__main__":
    sys.exit(main("store", StoreConfig, StoreService))
