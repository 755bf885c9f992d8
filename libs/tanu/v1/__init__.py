"""Generated gRPC/protobuf contracts (``make proto``); do not edit."""
