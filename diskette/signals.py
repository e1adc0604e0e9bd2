"""diskette's signals.

``post_load`` is sent once a load's data and media are in place, inside the
load's transaction and after ``DISKETTE_AFTER_LOAD`` (:mod:`diskette.hooks`),
with ``loaded`` (a :class:`diskette.hooks.Loaded`). A receiver that raises
rolls the load back, as a failing hook does::

    from django.dispatch import receiver
    from diskette.signals import post_load

    @receiver(post_load)
    def localize(sender, loaded, **kwargs):
        ...
"""

from django.dispatch import Signal

#: Sent with ``sender=diskette.models.Load`` and ``loaded``.
post_load = Signal()
