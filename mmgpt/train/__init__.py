"""train room of mmgpt."""
