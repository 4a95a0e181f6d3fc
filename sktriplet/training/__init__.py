"""Training: the skorch net, PK sampling, the network and criterion, the fit routine.

Training receives datasets and a spec from :mod:`sktriplet.inputs` and never
asks what kind of input they hold. The distributed extension
(:mod:`sktriplet.training.distributed`) is imported only when used.
"""
