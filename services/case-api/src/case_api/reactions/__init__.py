"""What case-api does with the events other services publish: one module per source service."""
