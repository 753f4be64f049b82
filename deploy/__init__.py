"""Deployment: ports, a local Triton for tests and benchmarks, and (beside it) images and manifests."""
