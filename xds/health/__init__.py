"""Kafka-aware operations on a cluster's partition state: broker readiness that knows in-sync
replicas (a rolling restart never takes a partition below `min.insync.replicas`) and replica
placement across two failure dimensions. The decisions are pure functions of `state.ClusterState`;
fetching that state is `xds.kafka`'s job."""
