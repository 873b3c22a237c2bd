"""Local list mirrors: answer DNSBL/RHSBL zones from local copies, exactly as rbldnsd would.

A new source of answers beside ``upstream/`` and ``cache/``. A zone with
``mirror = "TYPE:PATH[,PATH...]"`` (rbldnsd data files) or ``mirror =
"axfr:HOST[:PORT]"`` (a zone transfer) is answered from memory by the checks
through ``MirrorSource.answer`` (synchronous, no DNS, no task); the fronts
never see a mirror. Modules:

* ``syntax``: rbldnsd's address, value and TXT-substitution rules.
* ``datasets``: the dataset types (``base``, ``ip4``, ``ip6``, ``dnset``) and their compact frozen lookups.
* ``combined``: the ``combined`` type (several datasets on subzones).
* ``zonedata``: one loaded copy (``ZoneData.answer``).
* ``loader``: rbldnsd data files into a ``ZoneData`` (``load_files``).
* ``source``: ``MirrorSource``, ``Mirror`` and the polling ``FileMirror``.
* ``axfr``: ``AxfrMirror`` (dnspython; imported only when configured).
* ``mirrors``: ``MirrorSet``, the service's mirrors from config.
* ``spec``: the ``mirror`` config value.

Only the standard library is imported here.
"""

from .loader import load_files
from .mirrors import MirrorSet
from .source import FileMirror, Mirror, MirrorSource
from .spec import MirrorSpec, parse_spec
from .zonedata import MirrorLoadError, ZoneData

__all__ = [
    "MirrorSet",
    "MirrorSource",
    "Mirror",
    "FileMirror",
    "MirrorSpec",
    "parse_spec",
    "MirrorLoadError",
    "ZoneData",
    "load_files",
]
