"""The reference library: documents and their chunks, a third kind of searchable memory."""
