"""The policy set: its YAML files, loading and reloading, the guardrail stages that run its checks, `gateway policy`."""
