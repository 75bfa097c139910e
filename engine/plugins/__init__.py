"""Plugins: observers of the event stream and hooks at the engine's decision points.

A plugin is a class registered under the entry-point group ``mission_control.plugins``
(see ``docs/plugins.md``)::

    [project.entry-points."mission_control.plugins"]
    audit = "my_package:AuditPlugin"

It has a ``name`` (its config section is ``[plugins.<name>]``), an optional ``Config``
(a pydantic model; unknown keys are errors, ``enabled`` is always accepted), and may:

- return **observers** (:class:`Observer`): each reads the mission's events in id order,
  without gaps, in its own task. An exception or a slow observer never stops the mission
  or another observer; the first error of each observer is recorded once as a
  ``plugin.error`` event. Observers act only through the store (``ctx.store``), e.g.
  ``store.decide_approval``.
- override **hooks** (:class:`Plugin` methods, no-op by default): planning notes, the
  order of ready units, the worker options (model, single pass), the dispatch limit, the
  end of each agent session, around each epoch phase, after an epoch's work, after an
  epoch, and the mission outcome. Hooks of third-party plugins are isolated like
  observers (an error is recorded and the default is used); built-in plugins are trusted.

The package: ``base.py`` the protocol (:class:`Plugin`, :class:`Observer`, what they are
handed), ``loading.py`` discovery and config validation, ``manager.py`` the
:class:`PluginManager` (hooks), ``observers.py`` the :class:`ObserverRunner`. Every name is
importable from ``engine.plugins``.

The built-ins (publish, rewards, episodic memory, circuit breaker) are registered the
same way (``engine/builtins.py``) and can be switched off with
``[plugins.<name>] enabled = false``.
"""

from __future__ import annotations

from engine.plugins.base import (
    EpochView,
    Observer,
    ObserverContext,
    Plugin,
    PluginConfig,
    PluginError,
    WorkerOptions,
)
from engine.plugins.loading import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, configure, discover
from engine.plugins.manager import PluginManager
from engine.plugins.observers import DRAIN_SECONDS, ObserverRunner

__all__ = [
    "BUILTIN_PLUGINS", "DRAIN_SECONDS", "ENTRY_POINT_GROUP", "EpochView", "Observer",
    "ObserverContext", "ObserverRunner", "Plugin", "PluginConfig", "PluginError",
    "PluginManager", "WorkerOptions", "configure", "discover",
]
