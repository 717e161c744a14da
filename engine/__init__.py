"""DA3 Reconstruct engine: everything that also runs outside Blender (no bpy here).

Inside Blender this package is ``<extension>.engine``; in the engine process it is the top-level
package ``engine``. So modules here use relative imports only.
Only ``model/``, ``pipeline.py``, ``worker.py`` and ``cli.py`` may import torch.
"""

from .version import ENGINE_VERSION, PROTOCOL_VERSION

__all__ = ["ENGINE_VERSION", "PROTOCOL_VERSION"]
