"""One model call as every layer sees it: who is calling (caller.py) and the call's context (context.py)."""
