"""Internal helpers shared by every model family."""
