"""Agents' tool calls: the tool rules of a policy, their pure engine, and the stage that judges calls and results."""
