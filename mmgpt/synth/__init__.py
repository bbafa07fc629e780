"""synth room of mmgpt."""
