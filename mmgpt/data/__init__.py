"""data room of mmgpt."""
