"""UI: the "Reconstruct" tab of the 3D View sidebar (drawing only; the preferences draw in ``preferences/``)."""
