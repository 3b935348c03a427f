"""Upstream providers: the direct OpenAI-compatible path, litellm for the rest, and the fake provider."""
