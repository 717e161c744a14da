"""Engine and protocol versions (the engine version equals the extension version in blender_manifest.toml)."""

ENGINE_VERSION = "0.1.0"
PROTOCOL_VERSION = 1
