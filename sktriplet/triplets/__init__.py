"""The triplet core: distances, mining, the loss interface and the losses.

Pure torch: nothing here imports scikit-learn or skorch. Miners return index
tuples (anchor, positive, negative); losses take labels or such tuples
through one interface (:mod:`sktriplet.triplets.base`), and the losses
``criterion=`` knows by name are registered in one place
(:mod:`sktriplet.triplets.registry`).
"""
