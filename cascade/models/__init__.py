"""Neural models: encoders, learned sparse, cross-encoders (torch is imported only when used)."""
