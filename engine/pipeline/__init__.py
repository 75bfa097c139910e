"""The epoch pipeline: typed phases over an epoch context.

``EpochPipeline`` (``epochs.py``) runs each epoch as the phases ``plan`` (``plan.py``),
``execute`` (``execute.py``: dispatch, review, merge queue, fixups), ``publish`` (the
plugins' ``epoch_executed``: push, rewards), ``feedback`` and ``objective``
(``assess.py``). Resume is a starting phase (:func:`epochs.resume_point`), not a branch in
the loop. The stop policy (``stop.py``) and the command inbox (``commands.py``) are small
classes the phases share through :class:`state.MissionState`.
"""
