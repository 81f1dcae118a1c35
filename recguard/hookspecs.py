"""The hooks a recguard plugin implements.

Each ``register_*`` hook receives a ``register`` callback; call it once per
component class (or dataset / protocol spec) the plugin provides::

    from recguard.hookspecs import hookimpl

    @hookimpl
    def register_attacks(register):
        register(MyAttack)

A plugin is a module (or package) listed under the entry-point group
``recguard`` in its distribution's metadata.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("recguard")
hookimpl = pluggy.HookimplMarker("recguard")


@hookspec
def register_backbones(register):
    """Register `recguard.contracts.Backbone` subclasses."""


@hookspec
def register_attacks(register):
    """Register `recguard.contracts.Attack` subclasses."""


@hookspec
def register_defenses(register):
    """Register `recguard.contracts.Defense` subclasses."""


@hookspec
def register_metrics(register):
    """Register `recguard.contracts.Metric` subclasses."""


@hookspec
def register_datasets(register):
    """Register `recguard.data.datasets.DatasetSpec` objects (a name and a loader)."""


@hookspec
def register_protocols(register):
    """Register `recguard.protocols.Protocol` presets (e.g. an LLM recommender's protocol)."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the ``recguard`` CLI group ``cli``."""
