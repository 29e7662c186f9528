"""Search: the per-tenant in-memory index (dense + lexical), kept current from Redis."""
