"""streams/core package."""
