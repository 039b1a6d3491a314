"""Training data and trainers for Cascade's models: examples, synthetic queries, fine-tuning."""
