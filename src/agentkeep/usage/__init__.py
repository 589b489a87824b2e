"""Token usage per month and organization, against its budget."""
