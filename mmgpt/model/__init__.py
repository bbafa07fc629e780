"""model room of mmgpt."""
