"""The LoRA fine-tune: training data, resumable checkpoints, the trainer."""
