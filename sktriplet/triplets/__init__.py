"""The triplet core: distances, mining and losses on a batch of embeddings.

Pure torch: nothing here imports scikit-learn or skorch. Miners return index
tuples (anchor, positive, negative); the losses take labels or such tuples.
"""
