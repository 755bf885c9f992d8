"""`python -m tanu.detector`: runs the detector service, configured from the environment."""

import sys

from tanu.core.config import DetectorConfig
from tanu.core.runner import main
from tanu.detector.service import DetectorService

if __name__ == "__main__":
    sys.exit(main("detector", DetectorConfig, DetectorService))
