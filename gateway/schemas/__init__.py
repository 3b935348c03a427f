"""Wire shapes of the OpenAI-compatible API and the admin API."""
