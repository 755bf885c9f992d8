"""`python -m tanu.gateway`: runs the gateway service, configured from the environment."""

import sys

from tanu.core.config import GatewayConfig
from tanu.core.runner import main
from tanu.gateway import GatewayService

if __name__ == "__main__":
    sys.exit(main("gateway", GatewayConfig, GatewayService))
