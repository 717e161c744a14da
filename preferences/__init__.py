"""The add-on preferences, all in one place: the properties, their drawing, and setting up the engine.

``addon`` (the AddonPreferences class, ``get_prefs``, ``prefs_values``), ``draw`` (its layout),
``setup_engine`` (the Set Up Engine and Cancel Setup operators, the running setup and its timer) and
``locations`` (the extension's folder, its writable user folders, the engine environment and the engine
Python the preferences select). The names most callers need are here.
"""

from .addon import DA3_AddonPreferences, get_prefs, prefs_values
from .locations import ADDON_ID, ROOT, engine_python, user_folder

__all__ = [
    "ADDON_ID",
    "ROOT",
    "DA3_AddonPreferences",
    "engine_python",
    "get_prefs",
    "prefs_values",
    "user_folder",
]
