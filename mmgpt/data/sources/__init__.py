"""data/sources room of mmgpt."""
