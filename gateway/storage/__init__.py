"""Storage: the async database, its tables and their migrations."""
