"""What a caller may spend and how fast: budget reservations, rate windows (memory or Redis) and their stages."""
