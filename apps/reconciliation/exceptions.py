from apps.core.errors import InvalidRequest


class ReconError(Exception):
    """A reconciliation run that could not complete; `code` is stable."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


class BillFileInvalid(ReconError):
    def __init__(self, message: str):
        super().__init__(message, code="bill_invalid")


class ActionNotAllowed(InvalidRequest):
    """An action the discrepancy's kind or state does not allow."""
