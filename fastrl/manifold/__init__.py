"""Embeddings: t-SNE and classical methods."""
