"""Serving trained monsters: the adapter pool and the OpenAI-compatible server."""
