"""Envoy resources for the plan: per broker one Listener, one Cluster and one ClusterLoadAssignment;
per Kafka cluster with upstream TLS two Secrets, which name the sidecar's certificate files.

Every resource is built, serialized and hashed once per change, never per sidecar, and a broker whose
inputs did not change keeps the very object built for it before. The split of inputs is deliberate:
the Listener depends on the loopback address, the Cluster on TLS and connection settings, and only
the ClusterLoadAssignment on where the broker runs, so a broker moving to a new IP changes only its
ClusterLoadAssignment and Envoy neither drains the listener nor re-warms the cluster.

The TLS material reaches Envoy by file name, in SDS Secrets over the same ADS stream, each with the
directory to watch: Envoy reloads the files itself when the kubelet swaps a Secret volume's `..data`
symlink, so a renewed certificate is used without a restart and without kafka-xds. kafka-xds never
reads those files (they are paths on the sidecar) and never serves key material. A Cluster names its
two Secrets, so a changed path changes only the Secret.

The bytes are written directly in protobuf wire format (`encode`, with xds.shared.wire): building
the same messages through envoy-data-plane's pydantic classes costs about 3 ms each. Those classes
stay the model: `typed` builds each resource through them, the tests hold the two byte-for-byte
equal, and `typed.decoded` reads any resource back into them.

The package in the order of the data: `inputs` (what each resource depends on, the memo's keys),
`encode` (inputs to bytes), `builder` (the memo: each broker's resources, rebuilt only when its
inputs change) and `typed` (the same messages through envoy-data-plane, for tests and debug views).
"""
