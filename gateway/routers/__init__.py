"""HTTP routers; the only package besides app.py that imports FastAPI."""
