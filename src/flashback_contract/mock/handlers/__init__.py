"""One module per resource; each function is named by the operationId that routes to it."""
