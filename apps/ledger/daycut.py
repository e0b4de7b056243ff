"""Day cut (日切): which accounting day an instant belongs to.

An accounting day D ends at the cut-off time T (settings.PAYSYS_DAY_CUT_TIME, "HH:MM") on the
calendar date D in the zone settings.PAYSYS_DAY_CUT_ZONE. With T = 23:00, 22:59 on the 5th is
day 5 and 23:00 on the 5th is day 6. With T = 00:00 the accounting day is the calendar day.

A closed day is never written again: the journal entry trigger (migration 0002) moves an entry
dated on or before the last closed day to the day after it (the next open day).
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings


def cut_off_time() -> time:
    hours, minutes = (int(part) for part in settings.PAYSYS_DAY_CUT_TIME.split(":"))
    return time(hours, minutes)


def accounting_date_for(instant: datetime) -> date:
    """The accounting day of an aware instant, before any move past closed days."""
    cut = cut_off_time()
    local = instant.astimezone(ZoneInfo(settings.PAYSYS_DAY_CUT_ZONE))
    shifted = local - timedelta(hours=cut.hour, minutes=cut.minute)
    return shifted.date() + (timedelta(days=1) if cut != time(0, 0) else timedelta(0))
