"""Downstream protocols on extracted embeddings and features."""
