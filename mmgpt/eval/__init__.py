"""eval room of mmgpt."""
