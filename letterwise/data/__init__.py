"""Torch-free data work: the tokenizer vocabulary, the English-only token subset, the dataset."""
