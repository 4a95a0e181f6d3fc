"""Runtime: how the network runs on this machine, apart from what it learns.

The one eval-mode forward loop (:mod:`sktriplet.runtime.inference`), the
torch thread policy (:mod:`sktriplet.runtime.threads`), OpenMP threads
that sleep rather than spin while they wait
(:mod:`sktriplet.runtime.wait_policy`, which imports no torch: ``import
sktriplet`` applies it first) and the C allocator's policy while training
(:mod:`sktriplet.runtime.allocator`), and which floating-point precision
each pass runs in (:mod:`sktriplet.runtime.precision`).
Nothing here knows what ``X`` is, what a loss is, or the estimator.
"""
