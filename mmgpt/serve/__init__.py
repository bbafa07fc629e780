"""serve room of mmgpt."""
