"""Governance stages: authentication, budgets, policies, approvals."""
