"""infer room of mmgpt."""
