"""What runs in every serving process: the served snapshot, the xDS protocol, the gRPC transport,
admission, access, TLS, stream metrics and stream reports. Imports nothing of the pipeline, the
config or the debug server."""
