"""The run folder: its layout, the one-writer lock, and the resume checks."""
