"""Transition buttons in the console that run a service, never a bare state change.

A service locks the row, writes the audit row and events, and talks to providers where the
transition needs it; the generic django-fsm-2 admin would only flip the field. Each admin maps
the transitions it offers to a service `fn(*, obj, by) -> None`.
"""

from collections.abc import Callable

from django.contrib import messages
from django_fsm import ConcurrentTransition, TransitionNotAllowed
from django_fsm.admin import FSMAdminMixin

from apps.core.errors import PaysysError


class ServiceTransitionAdminMixin(FSMAdminMixin):
    fsm_services: dict[str, Callable[..., None]] = {}

    def is_fsm_transition_visible(self, transition) -> bool:
        return transition.name in self.fsm_services

    def _apply_fsm_transition(self, *, obj, transition_name, request, kwargs=None) -> bool:
        service = self.fsm_services.get(transition_name)
        if service is None:
            self.message_user(request, f"'{transition_name}' is not a console action.", level=messages.ERROR)
            return False
        try:
            service(obj=obj, by=f"admin:{request.user.get_username()}", **(kwargs or {}))
        except (PaysysError, TransitionNotAllowed, ConcurrentTransition) as err:
            self.message_user(request, f"'{transition_name}' failed: {err}", level=messages.ERROR)
            return False
        self.message_user(request, f"'{transition_name}' done.", level=messages.SUCCESS)
        return True

    def save_model(self, request, obj, form, change):
        # Every field is read-only here; saving a possibly stale row would race the services.
        pass
