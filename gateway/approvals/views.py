"""The public JSON shape of an approval: what /v1/approvals returns, webhooks carry and responses point to."""

from __future__ import annotations

from gateway.storage.tables import ApprovalRequest


def approval_json(row: ApprovalRequest) -> dict[str, object]:
    return {
        "id": row.id,
        "object": "approval",
        "status": row.status,
        "tool_call": {
            "id": row.tool_call_id,
            "type": "function",
            "function": {"name": row.tool_name, "arguments": row.arguments},
        },
        "requested_by": {"key_id": row.key_id, "key_name": row.key_name, "team_id": row.team_id},
        "model": row.model,
        "request_id": row.request_id,
        "policy": {"name": row.policy, "sha256": row.policy_sha256, "rule_id": row.rule_id},
        "risk": row.risk,
        "reason": row.reason,
        "approvers": {"roles": row.approver_roles, "teams": row.approver_teams},
        "on_timeout": row.on_timeout,
        "binding_hash": row.binding_hash,
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "decided_by": row.decided_by,
        "decided_by_name": row.decided_by_name,
        "comment": row.comment,
        "executed_at": row.executed_at.isoformat() if row.executed_at else None,
        "wait_url": f"/v1/approvals/{row.id}/wait",
    }
