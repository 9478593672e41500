"""What several stages use: the shared word-tokenizer memo."""
