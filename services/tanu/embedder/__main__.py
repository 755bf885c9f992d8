"""`python -m tanu.embedder`: runs the embedder service, configured from the environment."""

import sys

from tanu.core.config import EmbedderConfig
from tanu.core.runner import main
from tanu.embedder.service import EmbedderService

if __name__ == "__main__":
    sys.exit(main("embedder", EmbedderConfig, EmbedderService))
