"""Who is calling: virtual keys and teams in the database, their in-memory cache, and the auth stage."""
