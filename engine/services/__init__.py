"""Services over the one store (A2A, MCP, live web, tracing): each reads the store and its
events and acts only through it. The engine core never imports them."""
