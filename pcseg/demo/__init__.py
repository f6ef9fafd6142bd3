"""Application code: the demos that ``pcseg demo`` runs. The library never imports it."""
