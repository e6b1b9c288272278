"""`make k8s-smoke`: the built image running the local overlay's Jobs and Deployments here, without a cluster."""
