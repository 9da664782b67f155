"""Cards built from real metrics: the model card and the dataset card."""
