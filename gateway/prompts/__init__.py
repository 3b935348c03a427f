"""The prompt registry: immutable prompt versions, labels, sandboxed rendering and the hot-path cache."""
