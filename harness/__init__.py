"""Hardware-in-the-loop harness: streaming, agreement, reports, pytest plugin and CLI."""
