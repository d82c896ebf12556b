"""A stand-in for the parts of Pixar Tractor that renderfarm.tractor drives.

Never shipped in the collection: it exists so that the modules, roles and Molecule scenarios can
be tested against something that behaves like Tractor (see emulator/README.md and the fact sheet).
"""

__version__ = "0.1.0"
