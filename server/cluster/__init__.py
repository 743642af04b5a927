"""Rooms shared by several ``ipymeet serve --redis`` processes through one Redis."""
