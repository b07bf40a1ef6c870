"""End-to-end tests: the whole system started as operators start it (a package, so that the test modules
share `harness`)."""
