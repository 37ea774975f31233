"""Pure renderers: inputs in, file content out. No I/O here."""
