"""Container HEALTHCHECK: asks the service's own grpc.health.v1.Health
(overall status, service "") on 127.0.0.1:$TANU_GRPC_PORT; exits 0 only when
it answers SERVING. A searcher that is still catching up with its partition
says NOT_SERVING, so the image's start period allows for that."""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, timeout: float = 3.0) -> int:
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.RpcError as exc:
        print(f"{address}: {exc.code().name}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if status != "SERVING":
        print(f"{address}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    port = os.environ.get("TANU_GRPC_PORT", "50051")
    sys.exit(check(f"127.0.0.1:{port}"))
