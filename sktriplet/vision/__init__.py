"""Images: augmentation of training batches and image defaults."""
