from apps.core.errors import Conflict, InvalidRequest


class UnbalancedEntry(InvalidRequest):
    """The lines of a journal entry do not sum to zero in every currency."""

    default_code = "ledger_entry_unbalanced"


class InsufficientBalance(Conflict):
    """A posting would take an account that may not go negative below zero."""

    default_code = "insufficient_balance"


class DayNotClosable(Conflict):
    default_code = "accounting_day_not_closable"


class MakerCannotApprove(Conflict):
    """Maker-checker: the staff member who drafted an adjustment cannot approve it."""

    default_code = "adjustment_maker_cannot_approve"


class AdjustmentInvalid(InvalidRequest):
    default_code = "adjustment_invalid"
