"""Attacks on every door of a call, each performed and shown refused, beside the legitimate case
(docs/security.md, "Doors and principals", names the test of each cell)."""
