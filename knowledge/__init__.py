"""The knowledge base: one SQLite file with sqlite-vec vectors and FTS5 keywords."""
