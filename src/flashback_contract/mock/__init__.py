"""The stateful mock server: app factory, handlers, policy, auth and frontend support."""
