"""What several stages use: user-fixable errors, facts about scripts, the shared word-tokenizer memo."""
