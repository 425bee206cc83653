"""Real components for the tests: TLS upstreams, an Envoy process, a kafka-xds process."""
