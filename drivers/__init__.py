"""Hardware drivers, each a small interface with a fake twin beside it."""
