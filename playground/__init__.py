"""Demo, tiny data builders and user data (playground/data/)."""
