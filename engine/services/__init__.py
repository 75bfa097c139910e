"""Services over the one store (MCP, A2A, the live web dashboard, tracing).

Each service is a package here. The engine core never imports them: they read the store
and act only through it (approvals rows, the commands table).
"""
