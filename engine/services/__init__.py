"""Services over the one store (MCP, A2A, live web dashboard, tracing); the engine core never
imports them."""
