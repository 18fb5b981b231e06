"""Training of models of the compiled architecture family (planned: issue 8)."""
