"""Evaluation and use of embeddings.

Retrieval and verification metrics, scorers for model selection, neighbour
indexes, open-set recognition and plotting.
"""
