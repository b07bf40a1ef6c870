"""ops-console: the support workbench's backend (staff sign-in, sessions, tokens, a proxy to the services)."""
