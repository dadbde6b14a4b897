"""Scoring attribution maps against the store's regions."""
