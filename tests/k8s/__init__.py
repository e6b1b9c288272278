"""Helpers of tests/test_k8s_manifests.py: rendering the overlays, the operators' resource models, the policy graph."""
