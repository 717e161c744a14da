"""UI: the "Reconstruct" tab of the 3D View sidebar and the preferences layout (drawing only)."""
