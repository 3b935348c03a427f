"""Human approval of agents' tool calls: the durable approval service, its webhooks and the kill switch."""
