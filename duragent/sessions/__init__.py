"""Sessions: event payloads, transcripts, and (later) the live session actor and its manager."""
